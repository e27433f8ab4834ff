//! The one error type at the HTTP edge. Anything unexpected becomes a logged 500 that shows
//! no internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use slipway_types::api::{ErrorBody, ErrorDetail};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// An error with a code of its own, for clients that act on the kind of refusal.
    pub fn with_code(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, code, message)
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// The deploy a request waited on failed; the previous release keeps serving.
    pub fn deploy_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "deploy_failed", message)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error: see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<slipway_store::StoreError> for ApiError {
    fn from(error: slipway_store::StoreError) -> Self {
        match error {
            slipway_store::StoreError::NotFound(message) => Self::not_found(message),
            slipway_store::StoreError::Conflict(message) => Self::conflict(message),
            other => Self::internal(other),
        }
    }
}

impl From<slipway_types::NameError> for ApiError {
    fn from(error: slipway_types::NameError) -> Self {
        Self::invalid(error.to_string())
    }
}

impl From<slipway_types::ConfigError> for ApiError {
    fn from(error: slipway_types::ConfigError) -> Self {
        Self::invalid(error.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

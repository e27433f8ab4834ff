//! API tokens: JWTs signed with a key derived from the master key, each backed by a store row
//! so revocation is immediate.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aws_lc_rs::hmac;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use slipway_store::{App, Role, TokenRecord, TokenScope, User};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;

/// Every way a token can be refused, each with its own error code so clients can react (log
/// in again, ask for another scope) and the message says what to do.
pub(crate) mod refusal {
    use axum::http::StatusCode;

    use crate::error::ApiError;

    pub fn missing() -> ApiError {
        ApiError::with_code(
            StatusCode::UNAUTHORIZED,
            "token_missing",
            "no API token: log in with `slipway login`, or send `Authorization: Bearer <token>`",
        )
    }

    pub fn invalid() -> ApiError {
        ApiError::with_code(
            StatusCode::UNAUTHORIZED,
            "token_invalid",
            "the API token is malformed or was not issued by this server: log in again with `slipway login`",
        )
    }

    pub fn expired() -> ApiError {
        ApiError::with_code(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            "the API token has expired: log in again or create a new one with `slipway tokens:create`",
        )
    }

    pub fn revoked() -> ApiError {
        ApiError::with_code(
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "the API token was revoked: log in again with `slipway login`",
        )
    }

    pub fn scope(needed: &str, has: &str) -> ApiError {
        ApiError::with_code(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "this token has scope `{has}` and this call needs `{needed}`: use a token with scope `{needed}` (`slipway tokens:create --scope {needed}`)"
            ),
        )
    }

    pub fn admin_only() -> ApiError {
        ApiError::with_code(
            StatusCode::FORBIDDEN,
            "admin_only",
            "only admins may do this: ask an operator",
        )
    }

    pub fn owner_only(app: &str) -> ApiError {
        ApiError::with_code(
            StatusCode::FORBIDDEN,
            "owner_only",
            format!("only the owner of app `{app}` or an admin may do this"),
        )
    }

    /// The same answer for an app that does not exist and one the caller may not see.
    pub fn app_not_found(app: &str) -> ApiError {
        ApiError::with_code(
            StatusCode::NOT_FOUND,
            "app_not_found",
            format!("app `{app}` not found: `slipway apps` lists yours"),
        )
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    jti: Uuid,
    sub: Uuid,
    scope: String,
    iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenSigner {
    /// Derives the signing key from the master key, so the master key itself never signs.
    pub fn from_master_key(master_key: &[u8]) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, master_key);
        let derived = hmac::sign(&key, b"slipway api token signing v1");
        Self {
            encoding: EncodingKey::from_secret(derived.as_ref()),
            decoding: DecodingKey::from_secret(derived.as_ref()),
        }
    }

    pub fn issue(&self, record: &TokenRecord) -> anyhow::Result<String> {
        let claims = Claims {
            jti: record.id,
            sub: record.user_id,
            scope: record.scope.as_str().to_owned(),
            iat: record.created_at.unix_timestamp(),
            exp: record.expires_at.map(OffsetDateTime::unix_timestamp),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        // Expiry is checked against the store row, which is the source of truth.
        validation.validate_exp = false;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// This installation's id: stable for a master key, so servers sharing a store (and its key)
/// agree on which containers are theirs.
pub fn instance_id(master_key: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, master_key);
    hex::encode(&hmac::sign(&key, b"slipway instance id v1").as_ref()[..8])
}

/// Reads the master key, creating it (32 random bytes, hex, mode 0600) on first start.
pub fn load_or_create_master_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = hex::decode(text.trim())
                .map_err(|_| anyhow::anyhow!("master key file `{}` is not hex", path.display()))?;
            anyhow::ensure!(
                key.len() >= 32,
                "master key file `{}` holds fewer than 32 bytes",
                path.display()
            );
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            write_secret_file(path, &hex::encode(key))?;
            Ok(key.to_vec())
        }
        Err(error) => Err(anyhow::anyhow!(
            "reading master key file `{}`: {error}",
            path.display()
        )),
    }
}

/// Writes a file only its owner can read.
pub fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("writing `{}`: {e}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    Ok(())
}

/// Who is calling, established from a valid, unrevoked, unexpired token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub scope: TokenScope,
    /// Where the request came from, for the audit log.
    pub source_ip: Option<IpAddr>,
    /// The token the request came with; `None` for SSH pushes, authenticated by key.
    pub token_id: Option<Uuid>,
}

impl Caller {
    pub fn require_write(&self) -> Result<(), ApiError> {
        self.require_scope(TokenScope::Write)
    }

    pub fn require_scope(&self, needed: TokenScope) -> Result<(), ApiError> {
        if self.scope >= needed {
            Ok(())
        } else {
            Err(refusal::scope(needed.as_str(), self.scope.as_str()))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin && self.scope == TokenScope::Admin
    }

    /// Owners and admins (whatever their token's scope: scope is checked separately).
    pub fn owns(&self, app: &App) -> bool {
        self.user.role == Role::Admin || app.owner == self.user.id
    }
}

/// Checks a raw token and returns its caller.
pub async fn authenticate(state: &AppState, raw: &str) -> Result<Caller, ApiError> {
    let claims = state.signer.verify(raw).ok_or_else(refusal::invalid)?;
    let record = state
        .store
        .token(claims.jti)
        .await?
        .filter(|record| record.user_id == claims.sub)
        .ok_or_else(refusal::revoked)?;
    if record.revoked_at.is_some() {
        return Err(refusal::revoked());
    }
    if record
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(refusal::expired());
    }
    let user = state
        .store
        .user(record.user_id)
        .await?
        .ok_or_else(refusal::revoked)?;
    Ok(Caller {
        user,
        scope: record.scope,
        source_ip: None,
        token_id: Some(record.id),
    })
}

/// The bearer token of a request, if it sent one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The caller the authorization layer found (`router::authorize`); handlers of public routes
/// that take a `Caller` authenticate here instead.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let raw = bearer(parts).ok_or_else(refusal::missing)?;
        let mut caller = authenticate(state, raw).await?;
        caller.source_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(caller)
    }
}

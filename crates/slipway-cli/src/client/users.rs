//! Signing in and out, tokens, collaborators and the admin API.

use reqwest::Method;
use slipway_types::api::{
    AddCollaborator, AdminAppInfo, AuditEntry, CollaboratorInfo, CreateToken, CreateUser,
    CreatedUser, IssuedToken, LoginRequest, Maintenance, PlatformStatus, TokenInfo, UserInfo,
};

use super::{Client, ClientError, DEFAULT_TIMEOUT};

impl Client {
    pub async fn maintenance(&self, app: &str) -> Result<Maintenance, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "maintenance"])
            .await
    }

    pub async fn set_maintenance(
        &self,
        app: &str,
        enabled: bool,
    ) -> Result<Maintenance, ClientError> {
        self.call_with(
            Method::PUT,
            &["v1", "apps", app, "maintenance"],
            &Maintenance { enabled },
            DEFAULT_TIMEOUT,
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<IssuedToken, ClientError> {
        let body = LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        self.call_with(Method::POST, &["v1", "login"], &body, DEFAULT_TIMEOUT)
            .await
    }

    /// Revokes the token this client sends.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.send(
            Method::POST,
            &["v1", "logout"],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.call(Method::GET, &["v1", "tokens"]).await
    }

    pub async fn create_token(
        &self,
        scope: &str,
        expires_in: Option<&str>,
    ) -> Result<IssuedToken, ClientError> {
        let body = CreateToken {
            scope: scope.to_owned(),
            expires_in: expires_in.map(str::to_owned),
        };
        self.call_with(Method::POST, &["v1", "tokens"], &body, DEFAULT_TIMEOUT)
            .await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "tokens", id],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    pub async fn collaborators(&self, app: &str) -> Result<Vec<CollaboratorInfo>, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "collaborators"])
            .await
    }

    pub async fn add_collaborator(
        &self,
        app: &str,
        email: &str,
    ) -> Result<CollaboratorInfo, ClientError> {
        let body = AddCollaborator {
            email: email.to_owned(),
        };
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "collaborators"],
            &body,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    pub async fn remove_collaborator(&self, app: &str, email: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "apps", app, "collaborators", email],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    pub async fn admin_users(&self) -> Result<Vec<UserInfo>, ClientError> {
        self.call(Method::GET, &["v1", "admin", "users"]).await
    }

    pub async fn admin_create_user(
        &self,
        email: &str,
        role: &str,
        password: Option<&str>,
    ) -> Result<CreatedUser, ClientError> {
        let body = CreateUser {
            email: email.to_owned(),
            role: Some(role.to_owned()),
            password: password.map(str::to_owned),
        };
        self.call_with(
            Method::POST,
            &["v1", "admin", "users"],
            &body,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    pub async fn admin_remove_user(&self, email: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "admin", "users", email],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    pub async fn admin_apps(&self) -> Result<Vec<AdminAppInfo>, ClientError> {
        self.call(Method::GET, &["v1", "admin", "apps"]).await
    }

    pub async fn admin_audit(
        &self,
        limit: i64,
        app: Option<&str>,
        user: Option<&str>,
    ) -> Result<Vec<AuditEntry>, ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        query.extend(app.map(|app| ("app", app.to_owned())));
        query.extend(user.map(|user| ("user", user.to_owned())));
        self.call_query(Method::GET, &["v1", "admin", "audit"], &query)
            .await
    }

    pub async fn admin_status(&self) -> Result<PlatformStatus, ClientError> {
        self.call(Method::GET, &["v1", "admin", "status"]).await
    }
}

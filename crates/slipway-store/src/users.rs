//! Users and the API tokens issued to them. Tokens are JWTs signed by the server; the store
//! keeps their id so a token can be revoked or expire before its signature does.

use std::fmt;

use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, now, stored};
use crate::error::{Result, StoreError, violation};

macro_rules! token_columns {
    () => {
        "id, user_id, scope, created_at, expires_at, revoked_at"
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Operators: every app and the admin API.
    Admin,
    /// Their own apps and the ones they collaborate on.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Admin, Self::Member]
            .into_iter()
            .find(|role| role.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token may do. Ordered by power, so `scope >= TokenScope::Write` reads as "may write".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenScope {
    Read,
    Write,
    Admin,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
            TokenScope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Read, Self::Write, Self::Admin]
            .into_iter()
            .find(|scope| scope.as_str() == s)
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub scope: TokenScope,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Store {
    /// How many users exist: zero means first start, when the server creates the admin.
    pub async fn user_count(&self) -> Result<i64> {
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    /// Conflict when a user with this email exists.
    pub async fn create_user(&self, email: &str, role: Role) -> Result<User> {
        let user = User {
            id: Uuid::now_v7(),
            email: email.to_owned(),
            role,
            created_at: now(),
        };
        let inserted =
            sqlx::query("INSERT INTO users (id, email, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(user.id.to_string())
                .bind(&user.email)
                .bind(role.as_str())
                .bind(micros(user.created_at))
                .execute(&self.pool)
                .await;
        match inserted {
            Ok(_) => Ok(user),
            Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => Err(
                StoreError::Conflict(format!("user `{email}` already exists")),
            ),
            Err(err) => Err(err.into()),
        }
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<User>> {
        sqlx::query("SELECT id, email, role, created_at FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| user_from_row(&row))
            .transpose()
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        sqlx::query("SELECT id, email, role, created_at FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| user_from_row(&row))
            .transpose()
    }

    /// Every user, by email.
    pub async fn users(&self) -> Result<Vec<User>> {
        sqlx::query("SELECT id, email, role, created_at FROM users ORDER BY email")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// Records a new token; the caller signs a JWT carrying the returned id. NotFound when the
    /// user does not exist.
    pub async fn create_token(
        &self,
        user_id: Uuid,
        scope: TokenScope,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<TokenRecord> {
        let token = TokenRecord {
            id: Uuid::now_v7(),
            user_id,
            scope,
            created_at: now(),
            expires_at: expires_at.map(stored),
            revoked_at: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO tokens (id, user_id, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.id.to_string())
        .bind(user_id.to_string())
        .bind(scope.as_str())
        .bind(micros(token.created_at))
        .bind(token.expires_at.map(micros))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(token),
            Err(err) if violation(&err) == Some(ErrorKind::ForeignKeyViolation) => {
                Err(StoreError::NotFound(format!("user `{user_id}` not found")))
            }
            Err(err) => Err(err.into()),
        }
    }

    pub async fn token(&self, id: Uuid) -> Result<Option<TokenRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| token_from_row(&row))
        .transpose()
    }

    /// A user's tokens, newest first, revoked and expired ones included.
    pub async fn tokens(&self, user_id: Uuid) -> Result<Vec<TokenRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE user_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(user_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    /// Revoking twice keeps the first revocation time. NotFound when no such token exists.
    pub async fn revoke_token(&self, id: Uuid) -> Result<()> {
        let updated =
            sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(micros(now()))
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token `{id}` not found")));
        }
        Ok(())
    }
}

impl Store {
    /// Stores an argon2id PHC string as the user's password.
    pub async fn set_password_hash(&self, user_id: Uuid, hash: &str) -> Result<()> {
        let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user `{user_id}` not found")));
        }
        Ok(())
    }

    /// The user with that email and their password hash, if they have a password.
    pub async fn user_with_password(&self, email: &str) -> Result<Option<(User, Option<String>)>> {
        let Some(row) = sqlx::query(
            "SELECT id, email, role, created_at, password_hash FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let user = user_from_row(&row)?;
        let hash = Cols::new("users", &row).opt_text("password_hash")?;
        Ok(Some((user, hash)))
    }

    /// Removes a user with their tokens and collaborations. Conflict when they are the last
    /// admin, or still own apps (named, so they can be handed over or destroyed first).
    pub async fn remove_user(&self, user_id: Uuid) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT id, email, role, created_at FROM users WHERE id = $1")
            .bind(user_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(StoreError::NotFound(format!("user `{user_id}` not found")));
        };
        let user = user_from_row(&row)?;
        if user.role == Role::Admin {
            let (admins,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM users WHERE role = 'admin'")
                    .fetch_one(&mut *tx)
                    .await?;
            if admins <= 1 {
                return Err(StoreError::Conflict(format!(
                    "`{}` is the last admin: create another admin first",
                    user.email
                )));
            }
        }
        let owned: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM apps WHERE owner_id = $1 ORDER BY name")
                .bind(user_id.to_string())
                .fetch_all(&mut *tx)
                .await?;
        if !owned.is_empty() {
            let names: Vec<String> = owned.into_iter().map(|(name,)| name).collect();
            return Err(StoreError::Conflict(format!(
                "`{}` still owns {}: destroy those apps first",
                user.email,
                names.join(", ")
            )));
        }
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that a token was used from `address`; true the first time.
    pub async fn note_token_address(&self, token_id: Uuid, address: &str) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO token_addresses (token_id, address, first_seen) VALUES ($1, $2, $3)              ON CONFLICT (token_id, address) DO NOTHING",
        )
        .bind(token_id.to_string())
        .bind(address)
        .bind(micros(now()))
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Collaborators of an app, by email.
    pub async fn collaborators(&self, app_id: Uuid) -> Result<Vec<User>> {
        sqlx::query(
            "SELECT u.id, u.email, u.role, u.created_at FROM collaborators c              JOIN users u ON u.id = c.user_id WHERE c.app_id = $1 ORDER BY u.email",
        )
        .bind(app_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    pub async fn is_collaborator(&self, app_id: Uuid, user_id: Uuid) -> Result<bool> {
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM collaborators WHERE app_id = $1 AND user_id = $2")
                .bind(app_id.to_string())
                .bind(user_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Conflict when they already collaborate.
    pub async fn add_collaborator(&self, app_id: Uuid, user_id: Uuid) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO collaborators (app_id, user_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(app_id.to_string())
        .bind(user_id.to_string())
        .bind(micros(now()))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(err) => Err(match violation(&err) {
                Some(ErrorKind::UniqueViolation) => {
                    StoreError::Conflict("already a collaborator".to_owned())
                }
                Some(ErrorKind::ForeignKeyViolation) => {
                    StoreError::NotFound("no such app or user".to_owned())
                }
                _ => err.into(),
            }),
        }
    }

    /// NotFound when they were not a collaborator.
    pub async fn remove_collaborator(&self, app_id: Uuid, user_id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM collaborators WHERE app_id = $1 AND user_id = $2")
            .bind(app_id.to_string())
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("not a collaborator".to_owned()));
        }
        Ok(())
    }
}

fn user_from_row(row: &AnyRow) -> Result<User> {
    let cols = Cols::new("users", row);
    Ok(User {
        id: cols.uuid("id")?,
        email: cols.text("email")?,
        role: cols.parse("role", Role::parse)?,
        created_at: cols.time("created_at")?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    let cols = Cols::new("tokens", row);
    Ok(TokenRecord {
        id: cols.uuid("id")?,
        user_id: cols.uuid("user_id")?,
        scope: cols.parse("scope", TokenScope::parse)?,
        created_at: cols.time("created_at")?,
        expires_at: cols.opt_time("expires_at")?,
        revoked_at: cols.opt_time("revoked_at")?,
    })
}

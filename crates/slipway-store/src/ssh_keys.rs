//! SSH public keys registered per user. The SSH git transport finds the pushing user from the
//! key alone, so a key (by its fingerprint) belongs to one user at most.

use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, now};
use crate::error::{Result, StoreError, violation};

macro_rules! key_columns {
    () => {
        "id, user_id, name, algorithm, public_key, fingerprint, created_at, last_used_at"
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The key's comment, or the name the user gave it.
    pub name: String,
    /// The OpenSSH key type, like `ssh-ed25519`.
    pub algorithm: String,
    /// `<algorithm> <base64>`, without a comment.
    pub public_key: String,
    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// A key to register. The caller has parsed and checked it: the store keeps what it is given.
#[derive(Debug, Clone, Copy)]
pub struct NewSshKey<'a> {
    pub user_id: Uuid,
    pub name: &'a str,
    pub algorithm: &'a str,
    pub public_key: &'a str,
    pub fingerprint: &'a str,
}

impl Store {
    /// Conflict when the key is registered already, by this user or another one (the message
    /// does not say which); NotFound when the user does not exist.
    pub async fn add_ssh_key(&self, key: NewSshKey<'_>) -> Result<SshKey> {
        let added = SshKey {
            id: Uuid::now_v7(),
            user_id: key.user_id,
            name: key.name.to_owned(),
            algorithm: key.algorithm.to_owned(),
            public_key: key.public_key.to_owned(),
            fingerprint: key.fingerprint.to_owned(),
            created_at: now(),
            last_used_at: None,
        };
        let inserted = sqlx::query(concat!(
            "INSERT INTO ssh_keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"
        ))
        .bind(added.id.to_string())
        .bind(added.user_id.to_string())
        .bind(&added.name)
        .bind(&added.algorithm)
        .bind(&added.public_key)
        .bind(&added.fingerprint)
        .bind(micros(added.created_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(added),
            Err(err) if violation(&err) == Some(ErrorKind::UniqueViolation) => {
                Err(StoreError::Conflict(format!(
                    "SSH key `{}` is already registered: a key can belong to one user only",
                    key.fingerprint
                )))
            }
            Err(err) if violation(&err) == Some(ErrorKind::ForeignKeyViolation) => Err(
                StoreError::NotFound(format!("user `{}` not found", key.user_id)),
            ),
            Err(err) => Err(err.into()),
        }
    }

    /// A user's keys, oldest first.
    pub async fn ssh_keys(&self, user_id: Uuid) -> Result<Vec<SshKey>> {
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM ssh_keys WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    /// The key with this `SHA256:` fingerprint, whoever it belongs to.
    pub async fn ssh_key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<SshKey>> {
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM ssh_keys WHERE fingerprint = $1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| key_from_row(&row))
        .transpose()
    }

    /// Removes one of `user_id`'s keys. NotFound when that user has no key with this id, so
    /// nobody can remove another user's key.
    pub async fn remove_ssh_key(&self, user_id: Uuid, id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM ssh_keys WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("SSH key `{id}` not found")));
        }
        Ok(())
    }

    /// Records that the key just authenticated someone, for `keys` to show stale keys.
    pub async fn touch_ssh_key(&self, id: Uuid) -> Result<()> {
        sqlx::query("UPDATE ssh_keys SET last_used_at = $1 WHERE id = $2")
            .bind(micros(now()))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn key_from_row(row: &AnyRow) -> Result<SshKey> {
    let cols = Cols::new("ssh_keys", row);
    Ok(SshKey {
        id: cols.uuid("id")?,
        user_id: cols.uuid("user_id")?,
        name: cols.text("name")?,
        algorithm: cols.text("algorithm")?,
        public_key: cols.text("public_key")?,
        fingerprint: cols.text("fingerprint")?,
        created_at: cols.time("created_at")?,
        last_used_at: cols.opt_time("last_used_at")?,
    })
}

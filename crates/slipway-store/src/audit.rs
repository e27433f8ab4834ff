//! The audit log: every mutating API call, who made it and from where. Append-only.

use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, now};
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewAuditEvent<'a> {
    /// Who: a user's email, or `slipway` for the server's own actions.
    pub actor: &'a str,
    /// What, as `resource.verb` (`app.create`, `config.set`).
    pub action: &'a str,
    /// What it was done to (an app name, a user's email).
    pub target: &'a str,
    pub source_ip: Option<&'a str>,
    pub detail: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: Uuid,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
}

impl Store {
    pub async fn audit(&self, event: NewAuditEvent<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (id, at, actor, action, target, source_ip, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(Uuid::now_v7().hyphenated())
        .bind(micros(now()))
        .bind(event.actor)
        .bind(event.action)
        .bind(event.target)
        .bind(event.source_ip)
        .bind(event.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest `limit` events, newest first (none for a negative limit).
    pub async fn audit_events(&self, limit: i64) -> Result<Vec<AuditEvent>> {
        sqlx::query(
            "SELECT id, at, actor, action, target, source_ip, detail FROM audit_events \
             ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditEvent> {
    let cols = Cols::new("audit_events", row);
    Ok(AuditEvent {
        id: cols.uuid("id")?,
        at: cols.time("at")?,
        actor: cols.text("actor")?,
        action: cols.text("action")?,
        target: cols.text("target")?,
        source_ip: cols.opt_text("source_ip")?,
        detail: cols.opt_text("detail")?,
    })
}

//! The audit log: every mutating API call, push and login, who made it, from where and how it
//! ended. Append-only.

use slipway_types::api::AuditOutcome;
use sqlx::any::AnyRow;
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
    pub outcome: AuditOutcome,
}

/// Which events `audit_events` returns: the latest `limit`, optionally of one actor and/or
/// one target.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditFilter<'a> {
    pub limit: i64,
    pub actor: Option<&'a str>,
    pub target: Option<&'a str>,
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
    /// `None` for events written before outcomes were recorded.
    pub outcome: Option<AuditOutcome>,
}

impl Store {
    pub async fn audit(&self, event: NewAuditEvent<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (id, at, actor, action, target, source_ip, detail, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(micros(now()))
        .bind(event.actor)
        .bind(event.action)
        .bind(event.target)
        .bind(event.source_ip)
        .bind(event.detail)
        .bind(event.outcome.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest events that match, newest first (none for a negative limit).
    pub async fn audit_events(&self, filter: AuditFilter<'_>) -> Result<Vec<AuditEvent>> {
        sqlx::query(
            "SELECT id, at, actor, action, target, source_ip, detail, outcome FROM audit_events \
             WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR target = $2) \
             ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(filter.actor)
        .bind(filter.target)
        .bind(filter.limit.max(0))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEvent> {
    let cols = Cols::new("audit_events", row);
    Ok(AuditEvent {
        id: cols.uuid("id")?,
        at: cols.time("at")?,
        actor: cols.text("actor")?,
        action: cols.text("action")?,
        target: cols.text("target")?,
        source_ip: cols.opt_text("source_ip")?,
        detail: cols.opt_text("detail")?,
        outcome: cols.opt_parse("outcome", AuditOutcome::parse)?,
    })
}

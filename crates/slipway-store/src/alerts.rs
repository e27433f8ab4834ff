//! Webhooks, the alert thresholds apps set, and the alerts firing now. A webhook's signing
//! secret is kept sealed like config vars; a firing alert is a row, so it fires once per breach
//! even across server restarts.

use std::collections::BTreeMap;
use std::fmt;

use slipway_types::alerts::{AlertRule, DeliveryInfo, EventKind, FiringAlert, Threshold};
use sqlx::any::AnyRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::codec::{Cols, micros, now};
use crate::error::{Result, StoreError, violation};
use crate::seal::{open_text, seal_text};

/// Webhooks one app may have: each delivery is a request per webhook.
pub const MAX_WEBHOOKS_PER_APP: usize = 10;

macro_rules! webhook_columns {
    () => {
        "id, app_id, url, events, secret_sealed, created_at, last_event, last_ok, last_status, \
         last_attempts, last_delivery_at"
    };
}

#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub app_id: Uuid,
    pub url: String,
    pub events: Vec<EventKind>,
    /// Opened; never printed by `Debug`.
    pub secret: String,
    pub created_at: OffsetDateTime,
    pub last_delivery: Option<DeliveryInfo>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &format_args!("<redacted>"))
            .field("created_at", &self.created_at)
            .field("last_delivery", &self.last_delivery)
            .finish()
    }
}

impl Webhook {
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }
}

impl Store {
    /// Adds a webhook to the app. Conflict when the app has that URL already or has
    /// [`MAX_WEBHOOKS_PER_APP`]; NotFound when the app is gone.
    pub async fn add_webhook(
        &self,
        app_id: Uuid,
        url: &str,
        events: &[EventKind],
        secret: &str,
    ) -> Result<Webhook> {
        let mut tx = self.begin_write().await?;
        let existing: Vec<(String,)> = sqlx::query_as("SELECT url FROM webhooks WHERE app_id = $1")
            .bind(app_id.to_string())
            .fetch_all(&mut *tx)
            .await?;
        if existing.iter().any(|(known,)| known == url) {
            return Err(StoreError::Conflict(format!(
                "webhook `{url}` is already attached to this app"
            )));
        }
        if existing.len() >= MAX_WEBHOOKS_PER_APP {
            return Err(StoreError::Conflict(format!(
                "the app has {MAX_WEBHOOKS_PER_APP} webhooks already: remove one first"
            )));
        }
        let id = Uuid::now_v7();
        let created_at = now();
        let inserted = sqlx::query(
            "INSERT INTO webhooks (id, app_id, url, events, secret_sealed, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(app_id.to_string())
        .bind(url)
        .bind(events_text(events))
        .bind(seal_text(self.sealer(), &secret_owner(id), secret)?)
        .bind(micros(created_at))
        .execute(&mut *tx)
        .await;
        if let Err(err) = inserted {
            return Err(match violation(&err) {
                Some(sqlx::error::ErrorKind::ForeignKeyViolation) => {
                    StoreError::NotFound(format!("app `{app_id}` not found"))
                }
                _ => err.into(),
            });
        }
        tx.commit().await?;
        Ok(Webhook {
            id,
            app_id,
            url: url.to_owned(),
            events: events.to_vec(),
            secret: secret.to_owned(),
            created_at,
            last_delivery: None,
        })
    }

    /// The app's webhooks, oldest first, with their secrets opened.
    pub async fn webhooks(&self, app_id: Uuid) -> Result<Vec<Webhook>> {
        sqlx::query(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE app_id = $1 ORDER BY created_at, id"
        ))
        .bind(app_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| self.webhook_from_row(row))
        .collect()
    }

    /// Removes a webhook of the app. NotFound when the app has no such webhook.
    pub async fn remove_webhook(&self, app_id: Uuid, id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND app_id = $2")
            .bind(id.to_string())
            .bind(app_id.to_string())
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "webhook `{id}` is not attached to this app"
            )));
        }
        Ok(())
    }

    /// Records how a delivery ended. A webhook removed meanwhile is left alone.
    pub async fn record_delivery(&self, id: Uuid, delivery: &DeliveryInfo) -> Result<()> {
        sqlx::query(
            "UPDATE webhooks SET last_event = $1, last_ok = $2, last_status = $3, \
             last_attempts = $4, last_delivery_at = $5 WHERE id = $6",
        )
        .bind(delivery.event.as_str())
        .bind(i64::from(delivery.ok))
        .bind(delivery.status.as_str())
        .bind(i64::from(delivery.attempts))
        .bind(micros(delivery.at))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The thresholds the app set, by rule: `None` for a rule it turned off. Rules missing
    /// here have their default.
    pub async fn alert_thresholds(
        &self,
        app_id: Uuid,
    ) -> Result<BTreeMap<AlertRule, Option<Threshold>>> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT rule, threshold FROM alert_rules WHERE app_id = $1")
                .bind(app_id.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(rule, threshold)| {
                let corrupt = |what: &str| {
                    StoreError::Corrupt(format!(
                        "the store's alert rule `{rule}` has an unreadable {what}"
                    ))
                };
                let parsed: AlertRule = rule.parse().map_err(|_| corrupt("name"))?;
                let threshold = threshold
                    .map(|text| {
                        parsed
                            .parse_threshold(&text)
                            .map_err(|_| corrupt("threshold"))
                    })
                    .transpose()?;
                Ok((parsed, threshold))
            })
            .collect()
    }

    /// Sets the app's threshold for a rule; `None` turns the rule off. NotFound when the app
    /// is gone.
    pub async fn set_alert_threshold(
        &self,
        app_id: Uuid,
        rule: AlertRule,
        threshold: Option<Threshold>,
    ) -> Result<()> {
        let written = sqlx::query(
            "INSERT INTO alert_rules (app_id, rule, threshold, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, rule) DO UPDATE SET threshold = excluded.threshold, \
             updated_at = excluded.updated_at",
        )
        .bind(app_id.to_string())
        .bind(rule.as_str())
        .bind(threshold.map(|t| t.to_string()))
        .bind(micros(now()))
        .execute(&self.pool)
        .await;
        match written {
            Ok(_) => Ok(()),
            Err(err) => Err(match violation(&err) {
                Some(sqlx::error::ErrorKind::ForeignKeyViolation) => {
                    StoreError::NotFound(format!("app `{app_id}` not found"))
                }
                _ => err.into(),
            }),
        }
    }

    /// The app's alerts firing now, by rule.
    pub async fn firing_alerts(&self, app_id: Uuid) -> Result<Vec<FiringAlert>> {
        sqlx::query(
            "SELECT rule, value, message, fired_at FROM alerts_firing WHERE app_id = $1 \
             ORDER BY fired_at, rule",
        )
        .bind(app_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(firing_from_row)
        .collect()
    }

    /// Records that an alert fired. `false` when it was firing already: the breach was
    /// notified then, and is not again.
    pub async fn fire_alert(&self, app_id: Uuid, alert: &FiringAlert) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO alerts_firing (app_id, rule, value, message, fired_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id, rule) DO NOTHING",
        )
        .bind(app_id.to_string())
        .bind(alert.rule.as_str())
        .bind(alert.value.as_str())
        .bind(alert.message.as_str())
        .bind(micros(alert.since))
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Records that an alert recovered. `false` when it was not firing.
    pub async fn resolve_alert(&self, app_id: Uuid, rule: AlertRule) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM alerts_firing WHERE app_id = $1 AND rule = $2")
            .bind(app_id.to_string())
            .bind(rule.as_str())
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    fn webhook_from_row(&self, row: &AnyRow) -> Result<Webhook> {
        let cols = Cols::new("webhooks", row);
        let id = cols.uuid("id")?;
        let events = cols.parse("events", |text| {
            text.split(',')
                .map(|kind| kind.parse().ok())
                .collect::<Option<Vec<EventKind>>>()
        })?;
        let last_delivery = match cols.opt_text("last_event")? {
            Some(event) => Some(DeliveryInfo {
                event,
                ok: cols.opt_int("last_ok")?.unwrap_or_default() != 0,
                status: cols.opt_text("last_status")?.unwrap_or_default(),
                attempts: cols
                    .opt_int("last_attempts")?
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or_default(),
                at: cols.opt_time("last_delivery_at")?.unwrap_or_else(now),
            }),
            None => None,
        };
        Ok(Webhook {
            secret: open_text(
                self.sealer(),
                &secret_owner(id),
                &cols.text("secret_sealed")?,
            )?,
            id,
            app_id: cols.uuid("app_id")?,
            url: cols.text("url")?,
            events,
            created_at: cols.time("created_at")?,
            last_delivery,
        })
    }
}

fn firing_from_row(row: &AnyRow) -> Result<FiringAlert> {
    let cols = Cols::new("alerts_firing", row);
    Ok(FiringAlert {
        rule: cols.parse("rule", |s| s.parse().ok())?,
        value: cols.text("value")?,
        message: cols.text("message")?,
        since: cols.time("fired_at")?,
    })
}

fn events_text(events: &[EventKind]) -> String {
    events
        .iter()
        .map(|kind| kind.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// What a webhook's sealed secret is bound to: a value copied to another webhook does not open.
fn secret_owner(id: Uuid) -> String {
    format!("webhook/{}", id.hyphenated())
}

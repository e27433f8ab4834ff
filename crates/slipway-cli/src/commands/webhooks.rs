//! `webhooks`, `webhooks:add`, `webhooks:remove`, and the alert rules: `alerts`,
//! `alerts:set`, `alerts:remove`.

use slipway_types::alerts::{AlertRuleInfo, WebhookInfo};

use crate::cli::Session;
use crate::table::{self, Table};

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let webhooks = session.client()?.list_webhooks(&app).await?;
    if session.global.json {
        return session.print_json(&webhooks);
    }
    if webhooks.is_empty() {
        return session.print(&format!(
            "{app} has no webhooks: add one with `slipway webhooks:add https://…`\n"
        ));
    }
    session.print(&webhooks_table(&webhooks))
}

fn webhooks_table(webhooks: &[WebhookInfo]) -> String {
    let mut rows = Table::new(&["ID", "URL", "EVENTS", "LAST DELIVERY"]);
    for webhook in webhooks {
        let events: Vec<&str> = webhook.events.iter().map(|kind| kind.as_str()).collect();
        let last = webhook.last_delivery.as_ref().map(|delivery| {
            format!(
                "{} {} {} ({} attempt{}) at {}",
                delivery.event,
                if delivery.ok { "ok" } else { "FAILED" },
                delivery.status,
                delivery.attempts,
                if delivery.attempts == 1 { "" } else { "s" },
                table::time(delivery.at)
            )
        });
        rows.row(vec![
            webhook.id.to_string(),
            webhook.url.clone(),
            events.join(","),
            table::or_dash(last),
        ]);
    }
    rows.render()
}

pub(crate) async fn add(
    session: &mut Session<'_>,
    url: &str,
    events: Option<&str>,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let events = events
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|kind| !kind.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let created = session.client()?.add_webhook(&app, url, events).await?;
    if session.global.json {
        return session.print_json(&created);
    }
    let kinds: Vec<&str> = created
        .webhook
        .events
        .iter()
        .map(|kind| kind.as_str())
        .collect();
    session.print(&format!(
        "Added webhook {} to {app} ({} events)\n\
         Signing secret (shown only now; keep it in your receiver): {}\n\
         Each delivery is signed: X-Slipway-Signature: sha256=HMAC-SHA256(secret, raw body) in hex\n",
        created.webhook.id,
        kinds.join(", "),
        created.secret
    ))
}

pub(crate) async fn remove(session: &mut Session<'_>, id: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    session.client()?.remove_webhook(&app, id).await?;
    if session.global.json {
        return session.print_json(&serde_json::json!({ "removed": id }));
    }
    session.print(&format!("Removed webhook {id} from {app}\n"))
}

pub(crate) async fn alerts(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let rules = session.client()?.list_alerts(&app).await?;
    if session.global.json {
        return session.print_json(&rules);
    }
    session.print(&alerts_table(&rules))
}

fn alerts_table(rules: &[AlertRuleInfo]) -> String {
    let mut rows = Table::new(&["RULE", "THRESHOLD", "STATE"]);
    for info in rules {
        let threshold = match (&info.threshold, info.custom) {
            (Some(threshold), true) => threshold.clone(),
            (Some(threshold), false) => format!("{threshold} (default)"),
            (None, _) => "off".to_owned(),
        };
        let state = match &info.firing {
            Some(alert) => format!(
                "FIRING since {}: {}",
                table::time(alert.since),
                alert.message
            ),
            None if info.threshold.is_some() => "ok".to_owned(),
            None => "-".to_owned(),
        };
        rows.row(vec![info.rule.to_string(), threshold, state]);
    }
    rows.render()
}

pub(crate) async fn set(
    session: &mut Session<'_>,
    rule: &str,
    threshold: &str,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let info = session.client()?.set_alert(&app, rule, threshold).await?;
    if session.global.json {
        return session.print_json(&info);
    }
    session.print(&format!(
        "Alert {} on {app}: {}\n",
        info.rule,
        table::or_dash(info.threshold)
    ))
}

pub(crate) async fn remove_alert(session: &mut Session<'_>, rule: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    session.client()?.remove_alert(&app, rule).await?;
    if session.global.json {
        return session.print_json(&serde_json::json!({ "off": rule }));
    }
    session.print(&format!("Alert {rule} on {app}: off\n"))
}

#[cfg(test)]
mod tests {
    use slipway_types::alerts::{AlertRule, DeliveryInfo, EventKind, FiringAlert};
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn webhooks_show_their_last_delivery() {
        let table = webhooks_table(&[WebhookInfo {
            id: Uuid::nil(),
            url: "https://hooks.example.test/in".into(),
            events: vec![EventKind::Release, EventKind::Alert],
            created_at: at(),
            last_delivery: Some(DeliveryInfo {
                event: "release.failed".into(),
                ok: false,
                status: "503 Service Unavailable".into(),
                attempts: 6,
                at: at(),
            }),
        }]);
        assert_eq!(
            table,
            "ID                                    URL                            EVENTS         LAST DELIVERY\n\
             00000000-0000-0000-0000-000000000000  https://hooks.example.test/in  release,alert  release.failed FAILED 503 Service Unavailable (6 attempts) at 2027-01-15T08:00:00Z\n"
        );
    }

    #[test]
    fn alerts_show_defaults_custom_thresholds_and_firing_ones() {
        let table = alerts_table(&[
            AlertRuleInfo {
                rule: AlertRule::ErrorRate,
                threshold: Some("5%".into()),
                custom: true,
                firing: Some(FiringAlert {
                    rule: AlertRule::ErrorRate,
                    value: "40.0%".into(),
                    message: "5xx rate 40.0% is at or above 5%".into(),
                    since: at(),
                }),
            },
            AlertRuleInfo {
                rule: AlertRule::P99Latency,
                threshold: None,
                custom: false,
                firing: None,
            },
            AlertRuleInfo {
                rule: AlertRule::CrashLoop,
                threshold: Some("3/10m".into()),
                custom: false,
                firing: None,
            },
        ]);
        assert_eq!(
            table,
            "RULE         THRESHOLD        STATE\n\
             5xx-rate     5%               FIRING since 2027-01-15T08:00:00Z: 5xx rate 40.0% is at or above 5%\n\
             p99-latency  off              -\n\
             crash-loop   3/10m (default)  ok\n"
        );
    }
}

//! Signed webhook deliveries. Each event becomes one JSON body per webhook that wants it,
//! signed with the webhook's secret (HMAC-SHA256 over the raw body), queued in a bounded queue
//! and POSTed with retries and back-off by a few concurrent senders. Whoever queues never
//! waits: a full queue drops the delivery, counts it and records it on the webhook.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use serde::Serialize;
use slipway_store::{App, Store, Webhook};
use slipway_types::alerts::{AlertRule, DeliveryInfo, EventKind};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const SIGNATURE_HEADER: &str = "x-slipway-signature";
pub const TIMESTAMP_HEADER: &str = "x-slipway-timestamp";
pub const DELIVERY_HEADER: &str = "x-slipway-delivery";
pub const EVENT_HEADER: &str = "x-slipway-event";

/// Deliveries waiting for a sender; beyond this they are dropped.
const QUEUE: usize = 1024;
/// Deliveries in flight at once, retries included.
const SENDERS: usize = 16;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How hard a delivery is tried: `attempts` times, waiting `first_backoff` after the first
/// failure and twice as long after each next one.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for Retries {
    /// Six attempts over about half a minute: 1, 2, 4, 8 and 16 s apart.
    fn default() -> Self {
        Self {
            attempts: 6,
            first_backoff: Duration::from_secs(1),
        }
    }
}

/// A new webhook's signing secret: 32 random bytes, hex, with a prefix saying what it is.
pub fn generate_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`, the `X-Slipway-Signature` value. The
/// key is the secret exactly as shown at creation, as bytes.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// What a webhook receives. The id, event and time are in the body as well as the headers, so
/// the signature covers them: a receiver can refuse replays by id or age.
#[derive(Debug, Clone, Serialize)]
pub struct Payload<'a> {
    /// This delivery's id, the same on every retry: receivers deduplicate on it.
    pub id: Uuid,
    pub event: &'a str,
    pub app: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<&'a ReleaseFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<&'a AlertFacts>,
}

/// A release event's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseFacts {
    pub version: String,
    pub description: String,
    /// Why it failed or was rolled back.
    pub reason: Option<String>,
}

/// An alert event's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertFacts {
    pub rule: AlertRule,
    pub threshold: String,
    pub value: String,
    pub message: String,
}

/// An event of one app, before it is addressed to each webhook.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    /// `release.succeeded`, `alert.firing`…
    pub name: &'static str,
    pub at: OffsetDateTime,
    pub release: Option<ReleaseFacts>,
    pub alert: Option<AlertFacts>,
}

/// One signed body for one webhook.
struct Delivery {
    webhook: Uuid,
    url: String,
    event: &'static str,
    id: Uuid,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
}

/// The queue of deliveries and its senders.
#[derive(Clone)]
pub struct Deliveries {
    queue: mpsc::Sender<Delivery>,
    store: Store,
}

impl Deliveries {
    /// Starts the senders; they stop with `shutdown`.
    pub fn start(store: Store, retries: Retries, shutdown: CancellationToken) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("slipway-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        tokio::spawn(dispatch(
            pending,
            Sender {
                http,
                store: store.clone(),
                retries,
            },
            shutdown,
        ));
        Self { queue, store }
    }

    /// Queues the event for every webhook of the app that wants its kind. Never waits.
    pub async fn send(&self, app: &App, event: &Event) {
        let webhooks = match self.store.webhooks(app.id).await {
            Ok(webhooks) => webhooks,
            Err(error) => {
                tracing::warn!(app = %app.name, %error, event = event.name, "listing webhooks failed");
                return;
            }
        };
        for webhook in webhooks.iter().filter(|w| w.wants(event.kind)) {
            let delivery = match addressed(app, event, webhook) {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::error!(app = %app.name, %error, "encoding a webhook body failed");
                    continue;
                }
            };
            if let Err(mpsc::error::TrySendError::Full(dropped)) = self.queue.try_send(delivery) {
                metrics::counter!("slipway_webhook_deliveries_total", "outcome" => "dropped")
                    .increment(1);
                tracing::warn!(app = %app.name, webhook = %dropped.webhook, event = event.name, "webhook queue full: delivery dropped");
                let info = DeliveryInfo {
                    event: event.name.to_owned(),
                    ok: false,
                    status: "dropped: too many deliveries waiting".to_owned(),
                    attempts: 0,
                    at: OffsetDateTime::now_utc(),
                };
                self.store.record_delivery(webhook.id, &info).await.ok();
            }
        }
    }
}

fn addressed(app: &App, event: &Event, webhook: &Webhook) -> serde_json::Result<Delivery> {
    let id = Uuid::now_v7();
    let body = serde_json::to_vec(&Payload {
        id,
        event: event.name,
        app: app.name.as_str(),
        created_at: event.at,
        release: event.release.as_ref(),
        alert: event.alert.as_ref(),
    })?;
    Ok(Delivery {
        webhook: webhook.id,
        url: webhook.url.clone(),
        event: event.name,
        id,
        timestamp: event.at.unix_timestamp(),
        signature: sign(&webhook.secret, &body),
        body,
    })
}

#[derive(Clone)]
struct Sender {
    http: reqwest::Client,
    store: Store,
    retries: Retries,
}

async fn dispatch(
    mut pending: mpsc::Receiver<Delivery>,
    sender: Sender,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(SENDERS));
    loop {
        let delivery = tokio::select! {
            () = shutdown.cancelled() => return,
            delivery = pending.recv() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let sender = sender.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = sender.deliver(&delivery) => {}
            }
            drop(slot);
        });
    }
}

impl Sender {
    /// Tries until a 2xx answer or the attempts run out, then records the outcome.
    async fn deliver(&self, delivery: &Delivery) {
        let mut backoff = self.retries.first_backoff;
        let mut attempts = 0;
        let (ok, status) = loop {
            attempts += 1;
            let (ok, status) = self.attempt(delivery).await;
            if ok || attempts >= self.retries.attempts {
                break (ok, status);
            }
            tracing::debug!(webhook = %delivery.webhook, %status, attempts, "webhook delivery failed: retrying");
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        };
        let outcome = if ok { "delivered" } else { "failed" };
        metrics::counter!("slipway_webhook_deliveries_total", "outcome" => outcome).increment(1);
        if !ok {
            tracing::warn!(webhook = %delivery.webhook, url = %delivery.url, %status, attempts, "webhook delivery failed");
        }
        let info = DeliveryInfo {
            event: delivery.event.to_owned(),
            ok,
            status,
            attempts,
            at: OffsetDateTime::now_utc(),
        };
        if let Err(error) = self.store.record_delivery(delivery.webhook, &info).await {
            tracing::warn!(webhook = %delivery.webhook, %error, "recording a webhook delivery failed");
        }
    }

    async fn attempt(&self, delivery: &Delivery) -> (bool, String) {
        let sent = self
            .http
            .post(&delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &delivery.signature)
            .header(TIMESTAMP_HEADER, delivery.timestamp.to_string())
            .header(DELIVERY_HEADER, delivery.id.to_string())
            .header(EVENT_HEADER, delivery.event)
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => (
                response.status().is_success(),
                response.status().to_string(),
            ),
            Err(error) if error.is_timeout() => (
                false,
                format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            ),
            Err(error) if error.is_connect() => (false, "connection failed".to_owned()),
            Err(error) => (false, error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use slipway_store::Role;

    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231-style known vector (HMAC-SHA256, key "key").
        assert_eq!(
            sign("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_") && secret.len() == 6 + 64);
        assert_ne!(secret, generate_secret());
    }

    #[test]
    fn payloads_carry_the_event_and_its_facts() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let id = Uuid::nil();
        let release = ReleaseFacts {
            version: "1.2.0".into(),
            description: "Deploy 3f2a1bc".into(),
            reason: Some("automatic rollback: web.1 failed its health check".into()),
        };
        let body = serde_json::to_value(Payload {
            id,
            event: "release.failed",
            app: "shop",
            created_at: at,
            release: Some(&release),
            alert: None,
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": "00000000-0000-0000-0000-000000000000",
                "event": "release.failed",
                "app": "shop",
                "created_at": "2027-01-15T08:00:00Z",
                "release": {
                    "version": "1.2.0",
                    "description": "Deploy 3f2a1bc",
                    "reason": "automatic rollback: web.1 failed its health check"
                }
            })
        );
        let alert = AlertFacts {
            rule: AlertRule::ErrorRate,
            threshold: "5%".into(),
            value: "40.0%".into(),
            message: "5xx rate 40.0% (40 of 100 requests) is at or above 5%".into(),
        };
        let body = serde_json::to_value(Payload {
            id,
            event: "alert.firing",
            app: "shop",
            created_at: at,
            release: None,
            alert: Some(&alert),
        })
        .unwrap();
        assert_eq!(
            body["alert"],
            serde_json::json!({
                "rule": "5xx-rate",
                "threshold": "5%",
                "value": "40.0%",
                "message": "5xx rate 40.0% (40 of 100 requests) is at or above 5%"
            })
        );
        assert!(body.get("release").is_none());
    }

    /// A receiver that answers 503 to the first request and 204 after, recording each.
    #[derive(Clone, Default)]
    struct Receiver {
        seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    }

    async fn receive(
        State(receiver): State<Receiver>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let mut seen = receiver.seen.lock().unwrap();
        seen.push((headers, body));
        if seen.len() == 1 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NO_CONTENT
        }
    }

    #[tokio::test]
    async fn a_failed_delivery_is_retried_with_the_same_signed_body_and_recorded() {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });

        let store = Store::open_in_memory().await.unwrap();
        let owner = store.create_user("admin", Role::Admin).await.unwrap();
        let app = store
            .create_app(&"hooked".parse().unwrap(), owner.id)
            .await
            .unwrap();
        let secret = generate_secret();
        let webhook = store
            .add_webhook(
                app.id,
                &format!("http://{addr}/hook"),
                &[EventKind::Release],
                &secret,
            )
            .await
            .unwrap();
        store
            .add_webhook(
                app.id,
                &format!("http://{addr}/alerts-only"),
                &[EventKind::Alert],
                "other",
            )
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let deliveries = Deliveries::start(
            store.clone(),
            Retries {
                attempts: 3,
                first_backoff: Duration::from_millis(20),
            },
            shutdown.clone(),
        );
        let event = Event {
            kind: EventKind::Release,
            name: "release.succeeded",
            at: OffsetDateTime::now_utc(),
            release: Some(ReleaseFacts {
                version: "1.0.0".into(),
                description: "Deploy abc".into(),
                reason: None,
            }),
            alert: None,
        };
        deliveries.send(&app, &event).await;

        let mut recorded = None;
        for _ in 0..200 {
            recorded = store
                .webhooks(app.id)
                .await
                .unwrap()
                .into_iter()
                .find(|w| w.id == webhook.id)
                .and_then(|w| w.last_delivery);
            if recorded.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        shutdown.cancel();
        let recorded = recorded.expect("the delivery is recorded within 5 s");
        assert!(recorded.ok, "{recorded:?}");
        assert_eq!(recorded.attempts, 2);
        assert_eq!(recorded.status, "204 No Content");
        assert_eq!(recorded.event, "release.succeeded");

        let seen = receiver.seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            2,
            "the alert-only webhook gets no release event"
        );
        assert_eq!(seen[0].1, seen[1].1, "a retry sends the same body");
        let (headers, body) = &seen[1];
        assert_eq!(headers[SIGNATURE_HEADER], sign(&secret, body).as_str());
        assert_eq!(headers[EVENT_HEADER], "release.succeeded");
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(headers[DELIVERY_HEADER], json["id"].as_str().unwrap());
        assert_eq!(
            headers[TIMESTAMP_HEADER],
            event.at.unix_timestamp().to_string().as_str()
        );
        assert_eq!(json["app"], "hooked");
        assert_eq!(json["release"]["version"], "1.0.0");
    }
}

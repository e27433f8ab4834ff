//! A drain to a syslog receiver of the test's own, on 127.0.0.1: delivery in order, drops
//! while it is down, and recovery once it is back.

use std::time::{Duration, Instant};

use slipway_types::api::LogSource;
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::logs::LogFilter;

/// Every wait in these tests gives up after this long.
const PATIENCE: Duration = Duration::from_secs(30);

fn drain(app: &AppName, url: &str) -> Drain {
    Drain {
        id: Uuid::now_v7(),
        app_id: Uuid::now_v7(),
        app: app.clone(),
        url: slipway_types::drains::DrainUrl::parse(url).expect("drain url"),
        created_at: OffsetDateTime::now_utc(),
    }
}

/// Reads octet-counted syslog messages off a connection.
struct Receiver {
    conn: TcpStream,
    pending: Vec<u8>,
}

impl Receiver {
    async fn accept(listener: &TcpListener) -> Receiver {
        let (conn, _) = tokio::time::timeout(PATIENCE, listener.accept())
            .await
            .expect("the drain connects in time")
            .expect("accept");
        Receiver {
            conn,
            pending: Vec::new(),
        }
    }

    /// The MSG part of messages until one ends with `last`.
    async fn texts_until(&mut self, last: &str) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut texts = Vec::new();
        loop {
            while let Some(message) = self.next_frame() {
                let text = message.splitn(8, ' ').nth(7).unwrap_or_default().to_owned();
                let done = text == last;
                texts.push(text);
                if done {
                    return texts;
                }
            }
            let mut buf = [0u8; 8192];
            let read = tokio::time::timeout_at(deadline.into(), self.conn.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("`{last}` never arrived; got {texts:?}"))
                .expect("reading from the drain");
            assert!(read > 0, "the drain hung up before `{last}`; got {texts:?}");
            self.pending.extend_from_slice(&buf[..read]);
        }
    }

    fn next_frame(&mut self) -> Option<String> {
        let space = self.pending.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&self.pending[..space])
            .ok()?
            .parse()
            .expect("an octet count");
        let end = space + 1 + len;
        if self.pending.len() < end {
            return None;
        }
        let message = String::from_utf8(self.pending[space + 1..end].to_vec()).expect("utf-8");
        self.pending.drain(..end);
        Some(message)
    }
}

async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_drain_gets_lines_in_order_and_counts_what_it_drops_while_down() {
    let dir = tempfile::tempdir().unwrap();
    let hub = LogHub::open(dir.path().join("logs"), 1500).unwrap();
    let app: AppName = "shop".parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let drain = drain(&app, &format!("syslog://127.0.0.1:{port}"));
    let drains = Drains::new(hub.clone(), None, 20).unwrap();
    drains.start(&drain);

    for n in 0..5 {
        hub.push(&app, line(&format!("up {n}")));
    }
    let mut receiver = Receiver::accept(&listener).await;
    assert_eq!(
        receiver.texts_until("up 4").await,
        ["up 0", "up 1", "up 2", "up 3", "up 4"]
    );
    until("delivery is counted", || {
        drains.status(&drain).is_some_and(|s| s.delivered == 5)
    })
    .await;

    // The receiver goes away: lines pile up in the buffer of 20 and the oldest are dropped,
    // while pushing never waits.
    drop(receiver);
    drop(listener);
    for n in 0..50 {
        hub.push(&app, line(&format!("down {n}")));
    }
    until("drops are counted", || {
        drains.status(&drain).is_some_and(|s| s.dropped > 0)
    })
    .await;
    let notices = |words: &str| {
        hub.recent(&app, 1500, &LogFilter::default())
            .iter()
            .filter(|line| line.process == LOG_PROCESS && line.text.contains(words))
            .count()
    };
    until("the app's log says drops started", || {
        notices("is dropping lines") == 1
    })
    .await;
    assert!(drains.status(&drain).unwrap().last_error.is_some());

    // Back on the same port: the buffered lines arrive, oldest first, the newest included.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut receiver = Receiver::accept(&listener).await;
    let texts = receiver.texts_until("down 49").await;
    let numbers: Vec<u32> = texts
        .iter()
        .filter_map(|text| text.strip_prefix("down ")?.parse().ok())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "out of order: {texts:?}"
    );
    let status = drains.status(&drain).unwrap();
    assert!(
        numbers.len() as u64 + status.dropped >= 50,
        "{} arrived and {} were dropped of 50",
        numbers.len(),
        status.dropped
    );
    until("the app's log says drops stopped", || {
        notices("stopped dropping lines") == 1
    })
    .await;
    assert_eq!(notices("is dropping lines"), 1, "one notice per episode");

    drains.stop(&drain);
    assert!(drains.status(&drain).is_none());
}

#[tokio::test]
async fn a_destroyed_apps_drains_stop() {
    let dir = tempfile::tempdir().unwrap();
    let hub = LogHub::open(dir.path().join("logs"), 1500).unwrap();
    let app: AppName = "gone".parse().unwrap();
    let drain = drain(&app, "syslog://127.0.0.1:9");
    let drains = Drains::new(hub.clone(), None, 20).unwrap();
    drains.start(&drain);
    assert!(drains.status(&drain).is_some());
    hub.forget(&app);
    assert!(drains.status(&drain).is_none());
}

fn line(text: &str) -> LogLine {
    LogLine {
        at: OffsetDateTime::now_utc(),
        source: LogSource::App,
        process: "web.1".into(),
        text: text.into(),
    }
}

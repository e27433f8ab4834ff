//! A drain's buffer: the log hub offers it every line of the app without ever waiting, and the
//! drain's delivery task takes lines out in order. When the receiver is slow or down and the
//! buffer is full, the oldest line is dropped and counted.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::logs::LogLine;

pub(crate) struct Outbox {
    pub(super) id: Uuid,
    capacity: usize,
    queue: Mutex<Queue>,
    ready: Notify,
    /// Cancelled when the drain is removed or its app destroyed: the delivery task ends.
    closed: CancellationToken,
    delivered: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// `slipway_drain_dropped_total{app,drain}`, registered once so a drop costs an add.
    dropped_metric: metrics::Counter,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<LogLine>,
    dropped: u64,
}

/// How a drain is doing, for `drains`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OutboxStatus {
    pub delivered: u64,
    pub dropped: u64,
    pub buffered: u64,
    pub last_error: Option<String>,
}

impl Outbox {
    pub(super) fn new(id: Uuid, capacity: usize, dropped_metric: metrics::Counter) -> Outbox {
        Outbox {
            id,
            capacity: capacity.max(1),
            queue: Mutex::default(),
            ready: Notify::new(),
            closed: CancellationToken::new(),
            delivered: AtomicU64::new(0),
            last_error: Mutex::default(),
            dropped_metric,
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds a line, dropping the oldest when full. Never waits for the delivery task.
    pub(crate) fn offer(&self, line: &LogLine) {
        let dropped = {
            let mut queue = super::lock(&self.queue);
            let dropped = queue.lines.len() >= self.capacity;
            if dropped {
                queue.lines.pop_front();
                queue.dropped += 1;
            }
            queue.lines.push_back(line.clone());
            dropped
        };
        if dropped {
            self.dropped_metric.increment(1);
        }
        self.ready.notify_one();
    }

    /// The oldest lines, at most `max_lines` of them and about `max_bytes` of text (at least
    /// one line), taken out of the buffer. Empty when it is.
    pub(super) fn take(&self, max_lines: usize, max_bytes: usize) -> Vec<LogLine> {
        let mut queue = super::lock(&self.queue);
        let mut taken = Vec::new();
        let mut bytes = 0;
        while taken.len() < max_lines
            && let Some(next) = queue.lines.front()
        {
            bytes += next.text.len();
            if bytes > max_bytes && !taken.is_empty() {
                break;
            }
            taken.extend(queue.lines.pop_front());
        }
        taken
    }

    /// Waits until lines may be waiting; `false` once the drain is closed.
    pub(super) async fn ready(&self) -> bool {
        tokio::select! {
            () = self.closed.cancelled() => false,
            () = self.ready.notified() => true,
        }
    }

    pub(super) fn close(&self) {
        self.closed.cancel();
    }

    pub(super) fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    pub(super) fn buffered(&self) -> usize {
        super::lock(&self.queue).lines.len()
    }

    pub(super) fn dropped(&self) -> u64 {
        super::lock(&self.queue).dropped
    }

    pub(super) fn delivered(&self, lines: usize) {
        self.delivered.fetch_add(lines as u64, Ordering::Relaxed);
        *super::lock(&self.last_error) = None;
    }

    pub(super) fn failed(&self, error: String) {
        *super::lock(&self.last_error) = Some(error);
    }

    pub(crate) fn status(&self) -> OutboxStatus {
        let (buffered, dropped) = {
            let queue = super::lock(&self.queue);
            (queue.lines.len() as u64, queue.dropped)
        };
        OutboxStatus {
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped,
            buffered,
            last_error: super::lock(&self.last_error).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use slipway_types::api::LogSource;
    use time::OffsetDateTime;

    use super::*;

    fn line(text: &str) -> LogLine {
        LogLine {
            at: OffsetDateTime::UNIX_EPOCH,
            source: LogSource::App,
            process: "web.1".into(),
            text: text.into(),
        }
    }

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_lines_and_counts_them() {
        let outbox = Outbox::new(Uuid::nil(), 3, metrics::Counter::noop());
        for text in ["1", "2", "3", "4", "5"] {
            outbox.offer(&line(text));
        }
        let status = outbox.status();
        assert_eq!((status.buffered, status.dropped), (3, 2));
        assert_eq!(texts(&outbox.take(10, 1 << 20)), ["3", "4", "5"]);
        outbox.offer(&line("6"));
        assert_eq!(outbox.status().dropped, 2, "room again: nothing dropped");
        assert_eq!(texts(&outbox.take(10, 1 << 20)), ["6"]);
    }

    #[test]
    fn take_is_bounded_by_lines_and_bytes_but_always_makes_progress() {
        let outbox = Outbox::new(Uuid::nil(), 100, metrics::Counter::noop());
        for text in ["aaaa", "bbbb", "cccc", "dddd", "eeee"] {
            outbox.offer(&line(text));
        }
        assert_eq!(texts(&outbox.take(2, 1 << 20)), ["aaaa", "bbbb"]);
        assert_eq!(texts(&outbox.take(10, 6)), ["cccc"]);
        assert_eq!(texts(&outbox.take(10, 8)), ["dddd", "eeee"]);
        assert!(outbox.take(10, 8).is_empty());
    }

    #[test]
    fn delivery_counts_and_clears_the_last_error() {
        let outbox = Outbox::new(Uuid::nil(), 10, metrics::Counter::noop());
        outbox.failed("connection refused".into());
        assert_eq!(
            outbox.status().last_error.as_deref(),
            Some("connection refused")
        );
        outbox.delivered(7);
        let status = outbox.status();
        assert_eq!((status.delivered, status.last_error), (7, None));
    }
}

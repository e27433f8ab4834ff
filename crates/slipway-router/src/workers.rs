//! The threads client connections are served on, one event loop each, as nginx runs one worker
//! process per core, each accepting its own connections.
//!
//! On tokio's work-stealing runtime a proxied request wakes tasks across threads: the client
//! connection's task hands the request to the upstream connection's task, which may run on the
//! other core, and idle workers are woken (a `futex` call) to steal work. Here each connection
//! is served by one worker, the one that accepted it unless that one is busier than the rest
//! (no hand-over between threads, no extra `epoll_ctl`), and everything it starts (its upstream connections, its
//! WebSocket tunnels) runs on that worker's single-threaded runtime, so a request never leaves
//! the thread it arrived on. Upstream pools keep one idle stack per worker for the same reason.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// 1-based index of the worker running on this thread; 0 on any other thread.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The worker running on this thread, numbered from 1; 0 outside workers.
pub(crate) fn current() -> usize {
    WORKER.with(Cell::get)
}

pub(crate) struct Workers {
    workers: Vec<Worker>,
    /// Dropping these ends the workers' threads, with whatever still runs on them.
    _stop: Vec<oneshot::Sender<()>>,
}

struct Worker {
    handle: Handle,
    /// Client connections being served on this worker.
    connections: Arc<AtomicUsize>,
}

impl Workers {
    pub(crate) fn start(count: usize) -> io::Result<Self> {
        let mut workers = Vec::with_capacity(count);
        let mut stop = Vec::with_capacity(count);
        for index in 1..=count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            workers.push(Worker {
                handle: runtime.handle().clone(),
                connections: Arc::new(AtomicUsize::new(0)),
            });
            stop.push(stop_tx);
            std::thread::Builder::new()
                .name(format!("router-{index}"))
                .spawn(move || {
                    WORKER.with(|worker| worker.set(index));
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                })?;
        }
        Ok(Self {
            workers,
            _stop: stop,
        })
    }

    /// Where a connection accepted on this thread is served, counted against that worker for
    /// as long as the returned [`Assigned`] lasts. Each worker accepts for itself, as nginx's
    /// workers do, and keeps what it accepted unless it already serves more than one connection
    /// above the least busy worker: then the connection moves there, so a burst of new
    /// connections still spreads over every core.
    pub(crate) fn assign(&self) -> Assignment<'_> {
        let least = self
            .workers
            .iter()
            .min_by_key(|worker| worker.connections.load(Ordering::Relaxed))
            .expect("there is at least one worker");
        let here = current()
            .checked_sub(1)
            .and_then(|index| self.workers.get(index))
            .filter(|here| {
                here.connections.load(Ordering::Relaxed)
                    <= least.connections.load(Ordering::Relaxed) + 1
            });
        let worker = here.unwrap_or(least);
        worker.connections.fetch_add(1, Ordering::Relaxed);
        let assigned = Assigned(Arc::clone(&worker.connections));
        match here {
            Some(_) => Assignment::Here(assigned),
            None => Assignment::There(&worker.handle, assigned),
        }
    }

    /// Each worker's runtime, to run an accept loop on.
    pub(crate) fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.workers.iter().map(|worker| &worker.handle)
    }
}

pub(crate) enum Assignment<'a> {
    /// On the worker that accepted it.
    Here(Assigned),
    /// Moved to another worker's event loop.
    There(&'a Handle, Assigned),
}

/// One connection counted against its worker until dropped.
pub(crate) struct Assigned(Arc<AtomicUsize>);

impl Drop for Assigned {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

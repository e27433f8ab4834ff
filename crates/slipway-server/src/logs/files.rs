//! The log files: one JSON line per log line, `<dir>/<app>.jsonl`. One thread writes them all,
//! fed by an unbounded queue, so pushing a line never waits for the disk and a burst loses
//! nothing. Each batch the queue delivers is flushed once it is written.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use slipway_types::AppName;
use tokio::sync::{mpsc, oneshot};

use super::LogLine;

pub(super) fn path(dir: &Path, app: &AppName) -> PathBuf {
    dir.join(format!("{app}.jsonl"))
}

/// The last `keep` lines of a log file, oldest first. A missing file is an empty log; a line
/// that does not parse (cut short by a crash) is skipped.
pub(super) fn load(path: &Path, keep: usize) -> io::Result<VecDeque<LogLine>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(VecDeque::new()),
        Err(error) => return Err(error),
    };
    let mut lines = VecDeque::with_capacity(keep.min(4096));
    for text in BufReader::new(file).split(b'\n') {
        let Ok(line) = serde_json::from_slice::<LogLine>(&text?) else {
            continue;
        };
        if lines.len() == keep {
            lines.pop_front();
        }
        lines.push_back(line);
    }
    Ok(lines)
}

enum Op {
    Append(AppName, LogLine),
    Forget(AppName),
    Flush(oneshot::Sender<()>),
}

/// The queue to the writer thread. The thread ends once this is dropped and the queue is
/// drained.
pub(super) struct Files {
    queue: mpsc::UnboundedSender<Op>,
}

impl Files {
    pub(super) fn start(dir: PathBuf, keep: usize) -> io::Result<Files> {
        let (queue, ops) = mpsc::unbounded_channel();
        let writer = Writer {
            dir,
            keep,
            open: HashMap::new(),
            failing: HashSet::new(),
        };
        std::thread::Builder::new()
            .name("slipway-logs".to_owned())
            .spawn(move || writer.run(ops))?;
        Ok(Files { queue })
    }

    pub(super) fn append(&self, app: &AppName, line: LogLine) {
        self.send(Op::Append(app.clone(), line));
    }

    pub(super) fn forget(&self, app: &AppName) {
        self.send(Op::Forget(app.clone()));
    }

    pub(super) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        self.send(Op::Flush(done));
        // The writer thread only stops when the queue is dropped, which `&self` prevents.
        flushed.await.ok();
    }

    fn send(&self, op: Op) {
        if self.queue.send(op).is_err() {
            tracing::error!("the log writer thread is gone: log lines are no longer saved");
        }
    }
}

struct Writer {
    dir: PathBuf,
    keep: usize,
    open: HashMap<AppName, OpenLog>,
    /// Apps whose last write failed, so a full disk is reported once, not once per line.
    failing: HashSet<AppName>,
}

struct OpenLog {
    out: BufWriter<File>,
    /// Lines in the file, counting what is still buffered.
    lines: usize,
}

impl Writer {
    fn run(mut self, mut ops: mpsc::UnboundedReceiver<Op>) {
        while let Some(op) = ops.blocking_recv() {
            self.apply(op);
            while let Ok(op) = ops.try_recv() {
                self.apply(op);
            }
            self.flush_all();
        }
        self.flush_all();
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append(app, line) => {
                let result = self.append(&app, &line);
                self.outcome(&app, "writing", result);
            }
            Op::Forget(app) => {
                self.open.remove(&app);
                self.failing.remove(&app);
                let path = path(&self.dir, &app);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(%app, %error, "deleting the app's log file failed")
                    }
                }
            }
            Op::Flush(done) => {
                self.flush_all();
                done.send(()).ok();
            }
        }
    }

    fn append(&mut self, app: &AppName, line: &LogLine) -> io::Result<()> {
        let log = match self.open.entry(app.clone()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(open(&path(&self.dir, app))?)
            }
        };
        let written = serde_json::to_writer(&mut log.out, line)
            .map_err(io::Error::from)
            .and_then(|()| log.out.write_all(b"\n"));
        if let Err(error) = written {
            // The buffer may hold half a line: start over from what reached the file.
            self.open.remove(app);
            return Err(error);
        }
        log.lines += 1;
        if log.lines > self.keep * 2 {
            self.open.remove(app);
            trim(&path(&self.dir, app), self.keep)?;
        }
        Ok(())
    }

    fn flush_all(&mut self) {
        let mut failed = Vec::new();
        for (app, log) in &mut self.open {
            if let Err(error) = log.out.flush() {
                failed.push((app.clone(), error));
            }
        }
        for (app, error) in failed {
            self.open.remove(&app);
            self.outcome(&app, "flushing", Err(error));
        }
    }

    fn outcome(&mut self, app: &AppName, doing: &str, result: io::Result<()>) {
        match result {
            Ok(()) => {
                self.failing.remove(app);
            }
            Err(error) => {
                if self.failing.insert(app.clone()) {
                    tracing::warn!(%app, %error, "{doing} the app's log file failed; lines are kept in memory only until it works again");
                }
            }
        }
    }
}

/// Opens a log file for appending and counts its lines. A file that a crash left ending in the
/// middle of a line gets a line break first, so the next line is not glued to the broken one.
fn open(path: &Path) -> io::Result<OpenLog> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut lines = 0;
    let mut last = None;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        lines += buffer[..read].iter().filter(|b| **b == b'\n').count();
        last = Some(buffer[read - 1]);
    }
    let mut out = BufWriter::new(file);
    if last.is_some_and(|byte| byte != b'\n') {
        out.write_all(b"\n")?;
        lines += 1;
    }
    Ok(OpenLog { out, lines })
}

/// Rewrites the file with its last `keep` lines, through a temporary file renamed over it so
/// a crash leaves either the old file or the new one.
fn trim(path: &Path, keep: usize) -> io::Result<()> {
    let mut last = VecDeque::with_capacity(keep);
    for text in BufReader::new(File::open(path)?).split(b'\n') {
        if last.len() == keep {
            last.pop_front();
        }
        last.push_back(text?);
    }
    let temporary = path.with_extension("jsonl.tmp");
    let mut out = BufWriter::new(File::create(&temporary)?);
    for text in &last {
        out.write_all(text)?;
        out.write_all(b"\n")?;
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_data()?;
    std::fs::rename(&temporary, path)
}

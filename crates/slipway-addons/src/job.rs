//! Short-lived containers on the app network that check, dump or restore an add-on: the
//! client tools come from the add-on's own image, so their version matches the server's.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use slipway_engine::{ContainerEngine, EngineError, OutputStream};
use slipway_types::ContainerSpec;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::{AddonError, AddonInstance};

/// Stdout a job may print when nobody streams it somewhere: enough for a status query.
const MAX_CAPTURED_STDOUT: usize = 1024 * 1024;

/// The end of stderr kept for an error message.
const MAX_STDERR_TAIL: usize = 4 * 1024;

/// How a job ended.
#[derive(Debug)]
pub(crate) struct JobOutcome {
    pub code: i64,
    /// What the job printed to stdout when no sink was given.
    pub stdout: Vec<u8>,
    /// Bytes written to the sink.
    pub streamed: u64,
    /// The end of what the job printed to stderr.
    pub stderr: String,
}

/// One job: a container made from `spec`, removed when the job ends, fails, times out or is
/// dropped.
pub(crate) struct Job<'a> {
    pub engine: &'a Arc<dyn ContainerEngine>,
    pub addon: &'a AddonInstance,
    /// What messages call it: `backup`, `restore`, `readiness check`, `status query`.
    pub name: &'static str,
    pub spec: ContainerSpec,
    pub timeout: Duration,
}

/// How many probes, one every 250 ms, fit in `timeout`: what a readiness check's script
/// loops on.
pub(crate) fn readiness_attempts(timeout: Duration) -> String {
    (timeout.as_millis() / 250).max(1).to_string()
}

impl<'a> Job<'a> {
    /// A readiness check whose script probes for `timeout` (see [`readiness_attempts`]); the
    /// job gets 10 s more, to start its container and report.
    pub fn readiness_check(
        engine: &'a Arc<dyn ContainerEngine>,
        addon: &'a AddonInstance,
        spec: ContainerSpec,
        timeout: Duration,
    ) -> Self {
        Self {
            engine,
            addon,
            name: "readiness check",
            spec,
            timeout: timeout + Duration::from_secs(10),
        }
    }
}

impl Job<'_> {
    /// Runs the job to its end, feeding `stdin` (the spec must have `stdin_open`) and writing
    /// stdout to `sink` or capturing it.
    pub async fn run(
        self,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        sink: Option<&mut (dyn AsyncWrite + Unpin + Send)>,
    ) -> Result<JobOutcome, AddonError> {
        let addon = self.addon.display_name();
        let engine_error = |source: EngineError| AddonError::Engine {
            addon: addon.clone(),
            source,
        };
        let id = self
            .engine
            .create_container(&self.spec)
            .await
            .map_err(|error| match error {
                EngineError::NotFound { kind: "image", .. } => AddonError::ImageMissing {
                    image: self.spec.image.clone(),
                },
                error => engine_error(error),
            })?;
        let container = JobContainer {
            engine: Arc::clone(self.engine),
            id: Some(id.clone()),
        };
        let outcome = tokio::time::timeout(
            self.timeout,
            run_attached(self.engine.as_ref(), &id, stdin, sink),
        )
        .await;
        container.remove().await;
        match outcome {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(JobError::Engine(error))) => Err(engine_error(error)),
            Ok(Err(JobError::Io(source))) => Err(AddonError::Io {
                context: format!("streaming the {} of add-on `{addon}`", self.name),
                source,
            }),
            Err(_) => Err(AddonError::JobTimedOut {
                addon,
                job: self.name,
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    /// Runs the job and fails unless it exits with 0.
    pub async fn run_ok(
        self,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        sink: Option<&mut (dyn AsyncWrite + Unpin + Send)>,
    ) -> Result<JobOutcome, AddonError> {
        let (addon, name) = (self.addon.display_name(), self.name);
        let outcome = self.run(stdin, sink).await?;
        if outcome.code != 0 {
            return Err(AddonError::JobFailed {
                addon,
                job: name,
                code: outcome.code,
                output: outcome.stderr.trim().to_owned(),
            });
        }
        Ok(outcome)
    }
}

enum JobError {
    Engine(EngineError),
    Io(std::io::Error),
}

impl From<EngineError> for JobError {
    fn from(error: EngineError) -> Self {
        Self::Engine(error)
    }
}

impl From<std::io::Error> for JobError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

/// Attaches before starting, so no output is lost, then feeds stdin and drains the output
/// together: a job that fills its stdout pipe would otherwise never read the rest of stdin.
async fn run_attached(
    engine: &dyn ContainerEngine,
    id: &str,
    stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
    mut sink: Option<&mut (dyn AsyncWrite + Unpin + Send)>,
) -> Result<JobOutcome, JobError> {
    let attached = engine.attach(id).await?;
    engine.start(id).await?;
    let mut input = attached.input;
    let mut output = attached.output;

    let feed = async {
        if let Some(stdin) = stdin {
            tokio::io::copy(stdin, &mut input).await?;
            input.shutdown().await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let drain = async {
        let mut stdout = Vec::new();
        let mut streamed = 0u64;
        let mut stderr = Vec::new();
        while let Some(chunk) = output.next().await {
            let chunk = chunk?;
            match chunk.stream {
                OutputStream::Stdout => match sink.as_mut() {
                    Some(sink) => {
                        sink.write_all(&chunk.bytes).await?;
                        streamed += chunk.bytes.len() as u64;
                    }
                    None => {
                        let room = MAX_CAPTURED_STDOUT.saturating_sub(stdout.len());
                        stdout.extend_from_slice(&chunk.bytes[..chunk.bytes.len().min(room)]);
                    }
                },
                OutputStream::Stderr => {
                    stderr.extend_from_slice(&chunk.bytes);
                    if stderr.len() > 2 * MAX_STDERR_TAIL {
                        stderr.drain(..stderr.len() - MAX_STDERR_TAIL);
                    }
                }
            }
        }
        if let Some(sink) = sink.as_mut() {
            sink.flush().await?;
        }
        Ok::<_, JobError>((stdout, streamed, stderr))
    };
    let (fed, drained) = tokio::join!(feed, drain);
    let (stdout, streamed, mut stderr) = drained?;
    let code = engine.wait(id).await?;
    // A job that fails early stops reading its stdin; its exit code tells why, not the
    // broken pipe.
    if code == 0 {
        fed?;
    }
    if stderr.len() > MAX_STDERR_TAIL {
        stderr.drain(..stderr.len() - MAX_STDERR_TAIL);
    }
    Ok(JobOutcome {
        code,
        stdout,
        streamed,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// The job's container; dropped without `remove` (the job's future was cancelled), it is
/// removed in the background.
struct JobContainer {
    engine: Arc<dyn ContainerEngine>,
    id: Option<String>,
}

impl JobContainer {
    async fn remove(mut self) {
        if let Some(id) = self.id.take() {
            remove_logged(self.engine.as_ref(), &id).await;
        }
    }
}

impl Drop for JobContainer {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let engine = Arc::clone(&self.engine);
            runtime.spawn(async move { remove_logged(engine.as_ref(), &id).await });
        }
    }
}

async fn remove_logged(engine: &dyn ContainerEngine, id: &str) {
    if let Err(error) = engine.remove_container(id).await {
        tracing::warn!(container = %id, %error, "could not remove an add-on job container");
    }
}

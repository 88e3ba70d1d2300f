//! `command` kinds: run a configured program (argv, no shell) with the payload on stdin.
//!
//! The child gets its own process group, killed as a whole on timeout, cancel or
//! shutdown, so grandchildren do not outlive the job. Exit 0 = success; exit 75
//! (EX_TEMPFAIL) = run again later without spending an attempt; anything else = a
//! failed attempt. stdout and stderr are captured, bounded.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{Handler, HandlerFuture, JobContext};
use crate::config::KindConfig;
use crate::model::{Outcome, truncate_output};

/// Exit status meaning "try again later" (sysexits.h EX_TEMPFAIL).
pub const EXIT_RETRY_LATER: i32 = 75;
/// Delay before a job that exited 75 runs again.
const RETRY_LATER_DELAY: Duration = Duration::from_secs(30);

/// Runs a configured program.
pub struct CommandHandler {
    config: KindConfig,
}

impl CommandHandler {
    /// Handler for a `command` kind config.
    pub fn new(config: KindConfig) -> CommandHandler {
        CommandHandler { config }
    }
}

impl Handler for CommandHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        let config = self.config.clone();
        Box::pin(async move { run_command(config, ctx).await })
    }

    fn timeout(&self) -> Option<Duration> {
        self.config.timeout()
    }
}

/// Kills the whole process group when dropped, so an abandoned attempt leaves nothing
/// running.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) with a negative pid signals the group we created with
            // process_group(0); it has no memory-safety preconditions.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn run_command(config: KindConfig, ctx: JobContext) -> Outcome {
    let KindConfig::Command {
        program,
        args,
        env,
        cwd,
        ..
    } = config
    else {
        return Outcome::Failed {
            error: "internal: command handler given a non-command kind".to_owned(),
            log: None,
        };
    };
    let job = &ctx.job;
    let mut cmd = Command::new(&program);
    cmd.args(&args)
        .envs(&env)
        .env("ORDINAUT_JOB_ID", job.id.to_string())
        .env("ORDINAUT_ATTEMPT", job.attempt.to_string())
        .env("ORDINAUT_MAX_ATTEMPTS", job.max_attempts.to_string())
        .env("ORDINAUT_QUEUE", &job.queue)
        .env("ORDINAUT_KIND", &job.kind)
        .env("ORDINAUT_WORKER_ID", ctx.worker_id.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(request_id) = job.metadata.get("request_id").and_then(|v| v.as_str()) {
        cmd.env("ORDINAUT_REQUEST_ID", request_id);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Outcome::Failed {
                error: format!("cannot start {program:?}: {e}"),
                log: None,
            };
        }
    };
    let mut guard = GroupGuard(child.id().map(|pid| pid as i32));
    let payload = job.payload.to_string();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let limit = ctx.output_limit;
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A program that does not read stdin closes it early: not an error.
            let _ = stdin.write_all(payload.as_bytes()).await;
            let _ = stdin.shutdown().await;
        }
    };
    let out = tokio::spawn(read_bounded(stdout, limit));
    let err = tokio::spawn(read_bounded(stderr, limit));
    let (status, ()) = tokio::join!(
        async {
            tokio::select! {
                status = child.wait() => Some(status),
                _ = ctx.stop.cancelled() => None,
            }
        },
        feed
    );
    if status.is_none() {
        guard.kill();
        let _ = child.wait().await;
    }
    // The group is gone or finished; make sure no grandchild keeps the pipes open.
    guard.kill();
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    let log = Some(format_log(&stdout, &stderr, limit));
    match status {
        None => Outcome::Failed {
            error: "stopped".to_owned(),
            log,
        },
        Some(Err(e)) => Outcome::Retry {
            error: format!("waiting for {program:?} failed: {e}"),
            log,
        },
        Some(Ok(status)) => match status.code() {
            Some(0) => Outcome::Succeeded { output: None, log },
            Some(EXIT_RETRY_LATER) => Outcome::Snoozed {
                after: RETRY_LATER_DELAY,
                reason: format!("{program} exited {EXIT_RETRY_LATER} (retry later)"),
                log,
            },
            Some(code) => Outcome::Retry {
                error: format!("{program} exited with status {code}"),
                log,
            },
            None => Outcome::Retry {
                error: format!("{program} was killed by a signal ({status})"),
                log,
            },
        },
    }
}

async fn read_bounded<R: AsyncRead + Unpin>(reader: Option<R>, limit: usize) -> (Vec<u8>, usize) {
    let Some(mut reader) = reader else {
        return (Vec::new(), 0);
    };
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, total)
}

fn format_log(stdout: &(Vec<u8>, usize), stderr: &(Vec<u8>, usize), limit: usize) -> String {
    let mut log = String::new();
    for (name, (bytes, total)) in [("stdout", stdout), ("stderr", stderr)] {
        if *total == 0 {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        log.push_str(&format!("--- {name} ---\n"));
        log.push_str(&truncate_output(&text, limit));
        if *total > bytes.len() {
            log.push_str(&format!(
                "\n[... {} more bytes not kept]",
                total - bytes.len()
            ));
        }
        if !log.ends_with('\n') {
            log.push('\n');
        }
    }
    log
}

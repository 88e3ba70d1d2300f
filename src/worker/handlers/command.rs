//! `command` kinds: run a configured program (argv, no shell) with the payload on stdin.
//!
//! The child gets its own process group, killed as a whole on timeout, cancel or
//! shutdown, so grandchildren do not outlive the job. Exit 0 = success; exit 75
//! (EX_TEMPFAIL) = run again later without spending an attempt; anything else = a
//! failed attempt. stdout and stderr are captured, bounded.
//!
//! The child gets a clean environment: [`INHERITED_VARS`] (and `LC_*`) from the
//! worker, the kind's `env`, and the `ORDINAUT_*` job variables. The worker's own
//! secrets (`DATABASE_URL`, `API_TOKENS`, ...) are passed only when the kind sets
//! `inherit_env = true`.
//!
//! A descendant that left the group (`setsid`, a daemonizing script) survives the group
//! kill and can hold the output pipes open for ever; once the child has exited, the
//! pipes are read for at most [`PIPE_DRAIN`] more, then closed.

use std::pin::pin;
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
/// How long the output pipes are still read after the child exited and its group was
/// killed. Only a descendant that escaped the group can keep them open that long.
pub const PIPE_DRAIN: Duration = Duration::from_secs(1);
/// Variables passed on from the worker's environment (besides `LC_*`) when the kind
/// does not set `inherit_env`.
pub const INHERITED_VARS: &[&str] = &["PATH", "HOME", "LANG", "TZ"];

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

/// Makes the program die with the worker: a worker killed with SIGKILL (the OOM killer,
/// `kill -9`) runs no destructor, so without this its programs would go on running while
/// the rescuer hands their jobs to another worker, two executions of one job at once.
/// Linux delivers the signal when the thread that spawned the child exits; spawns happen
/// on the runtime's worker threads, which live as long as the process.
#[cfg(target_os = "linux")]
fn die_with_worker(cmd: &mut Command) {
    // SAFETY: getpid before fork; in the child only async-signal-safe calls (prctl,
    // getppid, _exit) run before exec.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The worker may have died between fork and prctl: then nobody would send it.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_worker(_cmd: &mut Command) {}

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
        inherit_env,
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
    if !inherit_env {
        cmd.env_clear();
        for (key, value) in std::env::vars_os() {
            if passed_on(&key) {
                cmd.env(key, value);
            }
        }
    }
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
    // A NUL byte cannot be in an environment value (spawn would fail).
    if let Some(request_id) = job
        .metadata
        .get("request_id")
        .and_then(|v| v.as_str())
        .filter(|r| !r.contains('\0'))
    {
        cmd.env("ORDINAUT_REQUEST_ID", request_id);
    }
    // The job's trace context, never the worker's own (an inherited TRACEPARENT would
    // join the program to an unrelated trace).
    cmd.env_remove("TRACEPARENT").env_remove("TRACESTATE");
    if let Some(trace) = &ctx.trace {
        cmd.env("TRACEPARENT", &trace.traceparent);
        if let Some(state) = &trace.tracestate {
            cmd.env("TRACESTATE", state);
        }
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    die_with_worker(&mut cmd);
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
    let mut stdout_kept = Captured::default();
    let mut stderr_kept = Captured::default();
    let status = {
        // The readers are futures of this one, not spawned tasks: dropping them (after
        // the drain below) closes our ends of the pipes, so nothing outlives the job.
        let mut reading = pin!(async {
            tokio::join!(
                stdout_kept.read_from(stdout, limit),
                stderr_kept.read_from(stderr, limit)
            )
        });
        let mut reading_done = false;
        let mut feed = pin!(async move {
            if let Some(mut stdin) = stdin {
                // A program that does not read stdin closes it early: not an error.
                let _ = stdin.write_all(payload.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
        });
        let mut feed_done = false;
        // The exit decides, not the pipes: a program that exits without reading all
        // of stdin, or leaves a daemon holding stdout, is still done.
        let status = loop {
            tokio::select! {
                status = child.wait() => break Some(status),
                _ = ctx.stop.cancelled() => break None,
                _ = &mut feed, if !feed_done => feed_done = true,
                _ = &mut reading, if !reading_done => reading_done = true,
            }
        };
        if status.is_none() {
            guard.kill();
            let _ = child.wait().await;
        }
        // The group is gone or finished; make sure no grandchild keeps the pipes open.
        guard.kill();
        if !reading_done
            && tokio::time::timeout(PIPE_DRAIN, &mut reading)
                .await
                .is_err()
        {
            tracing::debug!(
                drain_ms = PIPE_DRAIN.as_millis() as u64,
                "command output pipes still open after exit; a descendant escaped the process group"
            );
        }
        status
    };
    let (stdout, stderr) = (stdout_kept.into_parts(), stderr_kept.into_parts());
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

/// Whether the worker's variable `key` is passed on to a child without `inherit_env`.
fn passed_on(key: &std::ffi::OsStr) -> bool {
    let Some(key) = key.to_str() else {
        return false;
    };
    INHERITED_VARS.contains(&key) || key.starts_with("LC_")
}

/// Output of one pipe: the first `limit` bytes and how many there were in all.
#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    total: usize,
}

impl Captured {
    /// Reads `reader` to its end (or first error), keeping at most `limit` bytes. What
    /// was read stays in `self` when the future is dropped before the end.
    async fn read_from<R: AsyncRead + Unpin>(&mut self, reader: Option<R>, limit: usize) {
        let Some(mut reader) = reader else {
            return;
        };
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.total += n;
                    let room = limit.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }

    fn into_parts(self) -> (Vec<u8>, usize) {
        (self.kept, self.total)
    }
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

//! `command` kinds: run a configured program (argv, no shell) with the payload on stdin.
//!
//! Arguments may hold placeholders ([`crate::kinds::template`]); each stays exactly
//! one argv element whatever the payload holds. A placeholder that cannot be filled
//! fails the attempt before anything runs.
//!
//! The child gets its own process group. On timeout, cancel or shutdown the group gets
//! SIGTERM, then SIGKILL after the kind's `kill_grace` (10 s by default); the attempt's
//! error says which ended it. Exit statuses are judged by the kind's `success_codes`,
//! `retry_codes` and `fail_codes` ([`CommandKind::exit_meaning`]); exit 75
//! (EX_TEMPFAIL) = run again later without spending an attempt unless a list names it.
//! stdout and stderr are captured, bounded; `output` picks what becomes the job's
//! result (stdout as JSON or text, or the file `$ORDINAUT_OUTPUT_FILE`).
//!
//! Progress: the program may write lines to file descriptor `$ORDINAUT_PROGRESS_FD`
//! (3): `40`, `40% cloning`, or `{"percent": 40, "message": "cloning"}`.
//!
//! The child gets a clean environment: [`INHERITED_VARS`] (and `LC_*`) from the
//! worker, the kind's `env`, and the `ORDINAUT_*` job variables. The worker's own
//! secrets (`DATABASE_URL`, `API_TOKENS`, ...) are passed only when the kind sets
//! `inherit_env = true`.
//!
//! A descendant that left the group (`setsid`, a daemonizing script) survives the group
//! kill and can hold the output pipes open for ever; once the child has exited, the
//! pipes are read for at most [`PIPE_DRAIN`] more, then closed.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::pin::pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{Handler, HandlerFuture, JobContext, KindSpec};
use crate::kinds::template::{JobFields, Template};
use crate::kinds::{CommandKind, CommandOutput, DEFAULT_KILL_GRACE, ExitMeaning, KindConfig};
use crate::model::{Outcome, truncate_output};

pub use crate::kinds::EXIT_RETRY_LATER;
/// The descriptor number a program writes progress lines to.
pub const PROGRESS_FD: i32 = 3;
/// Longest progress line kept; the rest of a longer line is skipped.
const MAX_PROGRESS_LINE: usize = 4096;
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
    config: Arc<CommandKind>,
    args: Arc<Vec<Template>>,
}

impl CommandHandler {
    /// Handler for the `command` kind `name`; the error names the argument whose
    /// placeholder does not parse.
    pub fn new(name: &str, config: CommandKind) -> Result<CommandHandler, (String, String)> {
        let args = config
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| Template::parse(a).map_err(|r| (format!("kinds.{name}.args[{i}]"), r)))
            .collect::<Result<_, _>>()?;
        Ok(CommandHandler {
            config: Arc::new(config),
            args: Arc::new(args),
        })
    }
}

impl Handler for CommandHandler {
    fn run(&self, ctx: JobContext) -> HandlerFuture {
        let config = self.config.clone();
        let args = self.args.clone();
        Box::pin(async move { run_command(&config, &args, ctx).await })
    }

    fn timeout(&self) -> Option<Duration> {
        self.config.timeout
    }

    fn stop_grace(&self) -> Duration {
        self.config.kill_grace.unwrap_or(DEFAULT_KILL_GRACE)
    }

    fn describe(&self) -> KindSpec {
        KindSpec::of(&KindConfig::Command((*self.config).clone()))
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

    fn terminate(&self) {
        if let Some(pgid) = self.0 {
            // SAFETY: as in `kill`.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A pipe whose write end the child gets as descriptor [`PROGRESS_FD`].
fn progress_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array; both are owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from pipe2, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Makes `write_fd` the child's descriptor [`PROGRESS_FD`], open across exec.
fn pass_progress_fd(cmd: &mut Command, write_fd: i32) {
    // SAFETY: only dup2 and fcntl, async-signal-safe, run in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if write_fd == PROGRESS_FD {
                let flags = libc::fcntl(write_fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(write_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(write_fd, PROGRESS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Reads progress lines until the pipe closes, reporting each.
async fn read_progress(read_fd: OwnedFd, ctx: &JobContext) {
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(read_fd) else {
        return;
    };
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut buf = [0u8; 4096];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if !skipping
                    && let Some((percent, message)) =
                        crate::worker::progress::parse_line(&String::from_utf8_lossy(&line))
                {
                    ctx.report_progress(percent, message.as_deref());
                }
                line.clear();
                skipping = false;
            } else if line.len() < MAX_PROGRESS_LINE {
                line.push(b);
            } else {
                skipping = true;
            }
        }
    }
}

/// A private directory for the program's output file, removed when dropped.
struct OutputDir(PathBuf);

impl OutputDir {
    fn create(ctx: &JobContext) -> std::io::Result<OutputDir> {
        use std::os::unix::fs::DirBuilderExt;
        let suffix: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!(
            "ordinaut-{}-{}-{suffix:016x}",
            ctx.job.id, ctx.job.attempt
        ));
        // Mode 0700 and a fresh random name: nobody else can plant or read the file.
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(OutputDir(dir))
    }

    fn file(&self) -> PathBuf {
        self.0.join("output.json")
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a stopped program ended.
enum Ended {
    /// It exited after SIGTERM, within the grace.
    Terminated,
    /// It was still running after the grace and got SIGKILL.
    Killed(Duration),
}

async fn run_command(config: &CommandKind, templates: &[Template], ctx: JobContext) -> Outcome {
    let job = &ctx.job;
    let program = &config.program;
    let id = job.id.to_string();
    let fields = JobFields {
        id: &id,
        attempt: job.attempt,
        queue: &job.queue,
        kind: &job.kind,
    };
    let mut args = Vec::with_capacity(templates.len());
    for t in templates {
        match t.render(&job.payload, &fields, &|s| s.to_owned()) {
            // A NUL cannot be in an argument: the API refuses such payloads, but one
            // enqueued otherwise must fail here, not at spawn.
            Ok(arg) if arg.contains('\0') => {
                return Outcome::Failed {
                    error: "not run: an argument would contain NUL".to_owned(),
                    log: None,
                };
            }
            Ok(arg) => args.push(arg),
            Err(reason) => {
                return Outcome::Failed {
                    error: format!("not run: {reason}"),
                    log: None,
                };
            }
        }
    }
    let output_dir = match config.output {
        CommandOutput::File => match OutputDir::create(&ctx) {
            Ok(d) => Some(d),
            Err(e) => {
                return Outcome::Retry {
                    error: format!("cannot create the output file's directory: {e}"),
                    log: None,
                };
            }
        },
        _ => None,
    };
    let (progress_read, progress_write) = match progress_pipe() {
        Ok(p) => p,
        Err(e) => {
            return Outcome::Retry {
                error: format!("cannot create the progress pipe: {e}"),
                log: None,
            };
        }
    };
    let mut cmd = Command::new(program);
    if !config.inherit_env {
        cmd.env_clear();
        for (key, value) in std::env::vars_os() {
            if passed_on(&key) {
                cmd.env(key, value);
            }
        }
    }
    cmd.args(&args)
        .envs(&config.env)
        .env("ORDINAUT_JOB_ID", &id)
        .env("ORDINAUT_ATTEMPT", job.attempt.to_string())
        .env("ORDINAUT_MAX_ATTEMPTS", job.max_attempts.to_string())
        .env("ORDINAUT_QUEUE", &job.queue)
        .env("ORDINAUT_KIND", &job.kind)
        .env("ORDINAUT_WORKER_ID", ctx.worker_id.to_string())
        .env("ORDINAUT_PROGRESS_FD", PROGRESS_FD.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &output_dir {
        cmd.env("ORDINAUT_OUTPUT_FILE", dir.file());
    }
    // A NUL byte cannot be in an environment value (spawn would fail).
    if let Some(request_id) = job
        .metadata
        .get("request_id")
        .and_then(|v| v.as_str())
        .filter(|r| !r.contains('\0'))
    {
        cmd.env("ORDINAUT_REQUEST_ID", request_id);
    }
    if let Some(dir) = &config.cwd {
        cmd.current_dir(dir);
    }
    die_with_worker(&mut cmd);
    pass_progress_fd(&mut cmd, progress_write.as_raw_fd());
    let spawned = cmd.spawn();
    // Our copy of the write end must go, or the reader never sees the end.
    drop(progress_write);
    let mut child = match spawned {
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
    let grace = config.kill_grace.unwrap_or(DEFAULT_KILL_GRACE);
    let mut stdout_kept = Captured::default();
    let mut stderr_kept = Captured::default();
    let mut ended = None;
    let status = {
        // The readers are futures of this one, not spawned tasks: dropping them (after
        // the drain below) closes our ends of the pipes, so nothing outlives the job.
        let mut reading = pin!(async {
            tokio::join!(
                stdout_kept.read_from(stdout, limit),
                stderr_kept.read_from(stderr, limit),
                read_progress(progress_read, &ctx),
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
            // Soft stop: SIGTERM to the group, SIGKILL after the grace. Output keeps
            // being read meanwhile, so partial results reach the log.
            guard.terminate();
            let waited = tokio::time::timeout(grace, async {
                loop {
                    tokio::select! {
                        s = child.wait() => break s,
                        _ = &mut reading, if !reading_done => reading_done = true,
                    }
                }
            })
            .await;
            ended = Some(match waited {
                Ok(_) => Ended::Terminated,
                Err(_) => Ended::Killed(grace),
            });
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
    let stdout_total = stdout_kept.total;
    let (stdout, stderr) = (stdout_kept.into_parts(), stderr_kept.into_parts());
    let log = Some(format_log(&stdout, &stderr, limit));
    let code = match status {
        None => {
            let error = match ended {
                Some(Ended::Killed(grace)) => format!(
                    "killed with SIGKILL: still running {} after SIGTERM (kill_grace)",
                    humantime::format_duration(grace)
                ),
                _ => "terminated by SIGTERM".to_owned(),
            };
            return Outcome::Failed { error, log };
        }
        Some(Err(e)) => {
            return Outcome::Retry {
                error: format!("waiting for {program:?} failed: {e}"),
                log,
            };
        }
        Some(Ok(status)) => match status.code() {
            Some(code) => code,
            None => {
                return Outcome::Retry {
                    error: format!("{program} was killed by a signal ({status})"),
                    log,
                };
            }
        },
    };
    match config.exit_meaning(code) {
        ExitMeaning::Success => {
            match result(
                config.output,
                &stdout.0,
                stdout_total,
                output_dir.as_ref(),
                limit,
            ) {
                Ok(output) => Outcome::Succeeded { output, log },
                Err(error) => Outcome::Retry {
                    error: format!("{program} exited {code} but {error}"),
                    log,
                },
            }
        }
        ExitMeaning::Snooze => Outcome::Snoozed {
            after: RETRY_LATER_DELAY,
            reason: format!("{program} exited {EXIT_RETRY_LATER} (retry later)"),
            log,
        },
        ExitMeaning::Fail => Outcome::Failed {
            error: format!("{program} exited with status {code} (in fail_codes: no retry)"),
            log,
        },
        ExitMeaning::Retry => Outcome::Retry {
            error: format!("{program} exited with status {code}"),
            log,
        },
    }
}

/// The job's output as the kind's `output` says; the error says why there is none.
fn result(
    mode: CommandOutput,
    stdout: &[u8],
    stdout_total: usize,
    dir: Option<&OutputDir>,
    limit: usize,
) -> Result<Option<serde_json::Value>, String> {
    let too_big = |what: &str, n: usize| {
        format!(
            "its {what} ({n} bytes) exceeds the output limit of {limit} bytes (WORKER_OUTPUT_LIMIT_BYTES)"
        )
    };
    match mode {
        CommandOutput::None => Ok(None),
        CommandOutput::StdoutText => {
            if stdout_total > stdout.len() {
                return Err(too_big("stdout", stdout_total));
            }
            Ok(Some(serde_json::Value::String(
                String::from_utf8_lossy(stdout).into_owned(),
            )))
        }
        CommandOutput::StdoutJson => {
            if stdout_total > stdout.len() {
                return Err(too_big("stdout", stdout_total));
            }
            serde_json::from_slice(stdout)
                .map(Some)
                .map_err(|e| format!("its stdout is not JSON (output = \"stdout-json\"): {e}"))
        }
        CommandOutput::File => {
            let Some(dir) = dir else {
                return Ok(None);
            };
            let path = dir.file();
            let size = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => m.len() as usize,
                Ok(_) => return Err("$ORDINAUT_OUTPUT_FILE is not a regular file".to_owned()),
                Err(_) => return Err("it wrote no $ORDINAUT_OUTPUT_FILE".to_owned()),
            };
            if size > limit {
                return Err(too_big("output file", size));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("$ORDINAUT_OUTPUT_FILE cannot be read: {e}"))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("$ORDINAUT_OUTPUT_FILE is not JSON: {e}"))
        }
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

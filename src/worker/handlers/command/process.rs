//! The child process: its command line and clean environment, dying with the worker,
//! and its process group, terminated or killed as a whole.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

use super::{INHERITED_VARS, JobContext, PROGRESS_FD};
use crate::kinds::CommandKind;

/// The program of `config` with `args`, the environment the kind allows plus the job's
/// `ORDINAUT_*` variables and trace context, piped stdio and a process group of its own.
pub(super) fn command(
    config: &CommandKind,
    ctx: &JobContext,
    args: &[String],
    id: &str,
    output_file: Option<PathBuf>,
) -> Command {
    let job = &ctx.job;
    let program = &config.program;
    let mut cmd = Command::new(program);
    if !config.inherit_env {
        cmd.env_clear();
        for (key, value) in std::env::vars_os() {
            if passed_on(&key) {
                cmd.env(key, value);
            }
        }
    }
    cmd.args(args)
        .envs(&config.env)
        .env("ORDINAUT_JOB_ID", id)
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
    if let Some(file) = output_file {
        cmd.env("ORDINAUT_OUTPUT_FILE", file);
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
    // The job's trace context, never the worker's own (an inherited TRACEPARENT would
    // join the program to an unrelated trace).
    cmd.env_remove("TRACEPARENT").env_remove("TRACESTATE");
    if let Some(trace) = &ctx.trace {
        cmd.env("TRACEPARENT", &trace.traceparent);
        if let Some(state) = &trace.tracestate {
            cmd.env("TRACESTATE", state);
        }
    }
    if let Some(dir) = &config.cwd {
        cmd.current_dir(dir);
    }
    die_with_worker(&mut cmd);
    cmd
}

/// Makes the program die with the worker: a worker killed with SIGKILL (the OOM killer,
/// `kill -9`) runs no destructor, so without this its programs would go on running while
/// the rescuer hands their jobs to another worker, two executions of one job at once.
/// Linux delivers the signal when the thread that spawned the child exits; spawns happen
/// on the runtime's worker threads, which live as long as the process.
#[cfg(target_os = "linux")]
pub(super) fn die_with_worker(cmd: &mut Command) {
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
pub(super) fn die_with_worker(_cmd: &mut Command) {}

/// Kills the whole process group when dropped, so an abandoned attempt leaves nothing
/// running.
pub(super) struct GroupGuard(pub(super) Option<i32>);

impl GroupGuard {
    pub(super) fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) with a negative pid signals the group we created with
            // process_group(0); it has no memory-safety preconditions.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    pub(super) fn terminate(&self) {
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

/// Whether the worker's variable `key` is passed on to a child without `inherit_env`.
fn passed_on(key: &std::ffi::OsStr) -> bool {
    let Some(key) = key.to_str() else {
        return false;
    };
    INHERITED_VARS.contains(&key) || key.starts_with("LC_")
}

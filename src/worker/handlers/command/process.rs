//! The child process: its command line and clean environment, and its process group,
//! terminated or killed as a whole. (`spawn` starts it and makes it die with the
//! worker.)

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use super::spawn::Spec;
use super::{INHERITED_VARS, JobContext, PROGRESS_FD};
use crate::kinds::CommandKind;

/// The program of `config` with `args`, the environment the kind allows plus the job's
/// `ORDINAUT_*` variables and trace context.
pub(super) fn command(
    config: &CommandKind,
    ctx: &JobContext,
    args: &[String],
    id: &str,
    output_file: Option<PathBuf>,
) -> Spec {
    let job = &ctx.job;
    // Later settings replace earlier ones, as with `Command::env`.
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os()
        .filter(|(key, _)| config.inherit_env || passed_on(key))
        .collect();
    let mut set = |key: &str, value: OsString| {
        env.insert(key.into(), value);
    };
    for (key, value) in &config.env {
        set(key, value.into());
    }
    set("ORDINAUT_JOB_ID", id.into());
    set("ORDINAUT_ATTEMPT", job.attempt.to_string().into());
    set("ORDINAUT_MAX_ATTEMPTS", job.max_attempts.to_string().into());
    set("ORDINAUT_QUEUE", (&job.queue).into());
    set("ORDINAUT_KIND", (&job.kind).into());
    set("ORDINAUT_WORKER_ID", ctx.worker_id.to_string().into());
    set("ORDINAUT_PROGRESS_FD", PROGRESS_FD.to_string().into());
    if let Some(file) = output_file {
        set("ORDINAUT_OUTPUT_FILE", file.into());
    }
    // A NUL byte cannot be in an environment value (spawn would fail).
    if let Some(request_id) = job
        .metadata
        .get("request_id")
        .and_then(|v| v.as_str())
        .filter(|r| !r.contains('\0'))
    {
        set("ORDINAUT_REQUEST_ID", request_id.into());
    }
    // The job's trace context, never the worker's own (an inherited TRACEPARENT would
    // join the program to an unrelated trace).
    env.remove(std::ffi::OsStr::new("TRACEPARENT"));
    env.remove(std::ffi::OsStr::new("TRACESTATE"));
    if let Some(trace) = &ctx.trace {
        env.insert("TRACEPARENT".into(), (&trace.traceparent).into());
        if let Some(state) = &trace.tracestate {
            env.insert("TRACESTATE".into(), state.into());
        }
    }
    Spec {
        program: config.program.clone().into(),
        args: args.to_vec(),
        env,
        cwd: config.cwd.clone(),
    }
}

/// Kills the whole process group when dropped, so an abandoned attempt leaves nothing
/// running.
pub(super) struct GroupGuard(pub(super) Option<i32>);

impl GroupGuard {
    pub(super) fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) with a negative pid signals the group the child made
            // (`setpgid(0, 0)` in `spawn`); it has no memory-safety preconditions.
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

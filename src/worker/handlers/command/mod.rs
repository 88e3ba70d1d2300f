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
//!
//! Files by concern: this one runs an attempt from start to verdict; `process` builds
//! the child's command line and environment and kills its group; `spawn` starts it
//! (without forking the worker) and waits for it; `progress` reads the progress
//! descriptor; `output` captures the pipes and reads the job's result.

mod output;
mod process;
mod progress;
mod spawn;

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{Handler, HandlerFuture, JobContext, KindSpec};
use crate::kinds::template::{JobFields, Template};
use crate::kinds::{CommandKind, CommandOutput, DEFAULT_KILL_GRACE, ExitMeaning, KindConfig};
use crate::model::Outcome;
use output::{Captured, OutputDir, format_log, result};
use process::GroupGuard;
use progress::{progress_pipe, read_progress};

pub use crate::kinds::EXIT_RETRY_LATER;
/// The descriptor number a program writes progress lines to.
pub const PROGRESS_FD: i32 = 3;
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
    let fields = JobFields::of(job, &id);
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
    let output_file = output_dir.as_ref().map(OutputDir::file);
    let spec = process::command(config, &ctx, &args, &id, output_file);
    let spawned = spawn::spawn(&spec, &progress_write);
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
    let mut guard = GroupGuard(Some(child.id()));
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

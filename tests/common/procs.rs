//! Real `ordinaut` processes for the process tests: spawn the built binary (or a shell
//! that execs it) in a working directory, output to a log file there; signal it, wait
//! for it, stop it, read its log. Every test that starts a process goes through here.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::binary;

/// A spawned `ordinaut` process, killed if the test fails before stopping it.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// The process's output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of output so far.
    pub fn log_lines(&self) -> usize {
        self.output().lines().count()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// SIGKILL and reap; the wall-clock time of the kill (epoch seconds).
    pub fn kill9(mut self) -> f64 {
        let at = super::recorder::epoch_now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        at
    }

    /// SIGTERM and reap, whatever the exit.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
    }

    /// SIGTERM, then it must exit 0 within `within`; the message names `what` and holds
    /// its log.
    pub fn terminate(self, what: &str, within: Duration) {
        self.signal(libc::SIGTERM);
        self.exits_cleanly(what, within);
    }

    /// It must exit 0 within `within` (after a signal sent already).
    pub fn exits_cleanly(self, what: &str, within: Duration) {
        let log = self.log.clone();
        let code = self.wait(within);
        assert_eq!(
            code,
            Some(0),
            "{what} exits 0 on SIGTERM within {within:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Waits until the log contains `line` (a process signalled before its handler
    /// exists dies of the signal itself).
    pub fn wait_for_line(&self, line: &str, limit: Duration) {
        let started = Instant::now();
        while !self.output().contains(line) {
            assert!(
                started.elapsed() < limit,
                "no {line:?} within {limit:?}; log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for exit; returns the status code.
    pub fn wait(mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if start.elapsed() > limit {
                panic!(
                    "process did not exit within {limit:?}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh working directory holding `config` as its ordinaut.toml.
pub fn workdir(prefix: &str, config: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{prefix}-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ordinaut.toml"), config).unwrap();
    dir
}

/// SIGTERM to every worker once it has started; each must exit 0 within `within`.
pub fn stop_all(procs: Vec<Proc>, within: Duration) {
    for p in &procs {
        p.wait_for_line("worker started", Duration::from_secs(60));
    }
    for p in &procs {
        p.signal(libc::SIGTERM);
    }
    for p in procs {
        p.exits_cleanly("worker", within);
    }
}

/// A process about to start: a command, its directory and its log file.
pub struct Launch {
    cmd: Command,
    dir: PathBuf,
    log: String,
}

/// `ordinaut ARGS` in `dir`, inheriting the test's environment (see [`Launch::clean_env`]).
pub fn ordinaut(dir: &Path, args: &[&str]) -> Launch {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    Launch::command(dir, cmd)
}

impl Launch {
    /// Any command (a shell that loads an env file and execs the binary).
    pub fn command(dir: &Path, cmd: Command) -> Launch {
        Launch {
            cmd,
            dir: dir.to_owned(),
            log: format!("{}.log", Uuid::now_v7()),
        }
    }

    /// Nothing of the test's environment but `PATH`: call before [`Launch::env`].
    pub fn clean_env(mut self) -> Launch {
        self.cmd
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        self
    }

    /// One variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.cmd.env(key, value);
        self
    }

    /// Several variables.
    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Launch {
        self.cmd.envs(vars);
        self
    }

    /// The log's file name in the directory (default: a fresh one).
    pub fn log_name(mut self, name: &str) -> Launch {
        self.log = name.to_owned();
        self
    }

    /// Starts it: stdin closed, stdout and stderr to the log.
    pub fn start(mut self) -> Proc {
        let log = self.dir.join(&self.log);
        let file = std::fs::File::create(&log).expect("create the process log");
        self.cmd
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log file"))
            .stderr(file);
        Proc {
            child: self.cmd.spawn().expect("spawn the process"),
            log,
        }
    }
}

/// Spawns the binary in `dir` on `url` with nothing of the test's environment (queue
/// `q`, 0.2 s poll, info logs), then `env`.
pub fn spawn(dir: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    ordinaut(dir, args)
        .clean_env()
        .env("DATABASE_URL", url)
        .env("WORKER_QUEUES", "q")
        .env("WORKER_POLL_INTERVAL", "0.2")
        .env("LOG_LEVEL", "info")
        .envs(env.iter().copied())
        .start()
}

/// Asserts a finished command succeeded, showing its stderr if not.
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

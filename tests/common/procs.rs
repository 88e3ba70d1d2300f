//! Real `ordinaut` processes for the fault tests: spawn the built binary in a working
//! directory of its own, signal it, wait for it, read its log.

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

/// Spawns the binary in `dir` on `url` (queue `q`, 0.2 s poll, info logs), output to a
/// log file.
pub fn spawn(dir: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let log = dir.join(format!("{}.log", Uuid::now_v7()));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("WORKER_QUEUES", "q")
        .env("WORKER_POLL_INTERVAL", "0.2")
        .env("LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("spawn ordinaut"),
        log,
    }
}

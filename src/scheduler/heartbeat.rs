//! The fire loop's heartbeat: a small file rewritten after every tick, so a health check
//! run beside the scheduler (Docker `HEALTHCHECK`, a Kubernetes exec probe) can tell a
//! running loop from a stuck or dead one. A database check alone cannot: Postgres answers
//! just as well while the loop hangs.
//!
//! The file holds the time of the last tick in milliseconds since the Unix epoch. It is
//! replaced by rename, so a reader never sees a half-written value. Under systemd
//! (`Type=notify`, `$NOTIFY_SOCKET` set) each beat also sends `WATCHDOG=1`, and the
//! first one `READY=1`, so `WatchdogSec=` restarts a scheduler whose loop has stopped.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;

/// Least time between two writes: ticks are 0.2 s apart by default, probes 10 s or more.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// File name under the temp directory when `SCHEDULER_HEARTBEAT_FILE` is unset.
const DEFAULT_NAME: &str = "ordinaut-scheduler.heartbeat";

/// The heartbeat file of one scheduler process.
#[derive(Debug)]
pub struct Heartbeat {
    path: PathBuf,
    last: Mutex<Option<Instant>>,
    warned: AtomicBool,
    ready: AtomicBool,
}

/// Where the scheduler writes, and the health check reads, the heartbeat:
/// `SCHEDULER_HEARTBEAT_FILE`, else `$TMPDIR/ordinaut-scheduler.heartbeat`.
pub fn path(config: &Config) -> PathBuf {
    config
        .scheduler
        .heartbeat_file
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(DEFAULT_NAME))
}

impl Heartbeat {
    /// A heartbeat written to `path`.
    pub fn new(path: PathBuf) -> Heartbeat {
        Heartbeat {
            path,
            last: Mutex::new(None),
            warned: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        }
    }

    /// The file this heartbeat writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a tick (at most one write per second). A failed write is logged once and
    /// otherwise ignored: the check then reports the file stale, which is the truth.
    pub async fn beat(&self) {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| now.duration_since(t) < MIN_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        if !self.ready.swap(true, Ordering::Relaxed) {
            notify_systemd("READY=1");
        }
        notify_systemd("WATCHDOG=1");
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let result = async {
            tokio::fs::write(&tmp, format!("{millis}\n")).await?;
            tokio::fs::rename(&tmp, &self.path).await
        }
        .await;
        match result {
            Ok(()) => self.warned.store(false, Ordering::Relaxed),
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot write the scheduler heartbeat");
                }
            }
        }
    }
}

/// Sends `state` to systemd's notify socket when there is one (sd_notify(3)); anything
/// else is ignored: the notification is advice, the file is the record.
fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = target.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(Path::new(&target)),
    };
    if let (Ok(addr), Ok(socket)) = (addr, UnixDatagram::unbound()) {
        let _ = socket.send_to_addr(state.as_bytes(), &addr);
    }
}

/// How long ago the heartbeat at `path` was written; the error says why there is none.
pub fn age(path: &Path) -> Result<Duration, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "no scheduler heartbeat at {}: the fire loop has not ticked (not started yet, or \
             SCHEDULER_HEARTBEAT_FILE/TMPDIR differ from the scheduler's)",
            path.display()
        ),
        _ => format!(
            "cannot read the scheduler heartbeat {}: {e}",
            path.display()
        ),
    })?;
    let millis: u64 = text.trim().parse().map_err(|_| {
        format!(
            "scheduler heartbeat {} holds {:?}, not a time",
            path.display(),
            text.trim()
        )
    })?;
    let written = UNIX_EPOCH + Duration::from_millis(millis);
    // A clock step backwards makes the file look fresh, not stale: never a false alarm.
    Ok(SystemTime::now()
        .duration_since(written)
        .unwrap_or(Duration::ZERO))
}

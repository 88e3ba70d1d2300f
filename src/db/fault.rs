//! Database faults seen by this process: which errors mean "the server went away, is
//! shutting down, or is (no longer) a writable primary", and the moment the last one was
//! seen.
//!
//! Every store error passes through [`observe`]. A fault retires every pooled connection
//! opened before it (the pools' `before_acquire`/`after_release` hooks close them instead
//! of handing them out again) and wakes the pools' retarget tasks, which look for the
//! primary through the host list. One process-wide record: all of a process's pools talk
//! to the same database, and a fault on one connection says the others are suspect too.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// What an error says about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Nothing about the server (a constraint, a bad value, a query mistake).
    None,
    /// The server is read-only, in recovery, shutting down or starting up, or the
    /// connection broke: the connection must not be reused.
    Server,
    /// The pool could not hand out a connection in time: look for the server again,
    /// but the pooled connections may be fine.
    Busy,
}

/// SQLSTATEs after which a connection is on the wrong server or about to be gone.
const SERVER_CODES: [&str; 4] = [
    "25006", // read_only_sql_transaction: a standby, or default_transaction_read_only
    "57P01", // admin_shutdown (fast shutdown, pg_terminate_backend)
    "57P02", // crash_shutdown (another backend crashed)
    "57P03", // cannot_connect_now (starting up, in recovery)
];

/// Classifies a sqlx error.
pub(crate) fn classify(e: &sqlx::Error) -> Kind {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) if SERVER_CODES.contains(&code.as_ref()) || code.starts_with("08") => {
                Kind::Server
            }
            _ => Kind::None,
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Kind::Server,
        sqlx::Error::PoolTimedOut => Kind::Busy,
        _ => Kind::None,
    }
}

struct State {
    origin: Instant,
    /// Milliseconds after `origin` of the last server fault, plus one (0: none yet).
    last_fault: AtomicU64,
    /// Bumped on every fault; the retarget tasks watch it.
    faults: watch::Sender<u64>,
}

static STATE: LazyLock<State> = LazyLock::new(|| State {
    origin: Instant::now(),
    last_fault: AtomicU64::new(0),
    faults: watch::Sender::new(0),
});

/// Records what `e` says about the server (see the module docs).
pub(crate) fn observe(e: &sqlx::Error) {
    match classify(e) {
        Kind::None => {}
        Kind::Server => retire_connections(),
        Kind::Busy => wake(),
    }
}

/// Retires every connection opened until now and wakes the retarget tasks.
pub(crate) fn retire_connections() {
    let s = &*STATE;
    let now = s.origin.elapsed().as_millis() as u64 + 1;
    s.last_fault.fetch_max(now, Ordering::AcqRel);
    wake();
}

fn wake() {
    STATE.faults.send_modify(|n| *n = n.wrapping_add(1));
}

/// True when a connection of this age was opened before the last fault.
pub(crate) fn predates_last_fault(age: Duration) -> bool {
    let s = &*STATE;
    let last = s.last_fault.load(Ordering::Acquire);
    if last == 0 {
        return false;
    }
    let opened = s.origin.elapsed().saturating_sub(age).as_millis() as u64 + 1;
    opened <= last
}

/// A receiver that changes on every fault.
pub(crate) fn subscribe() -> watch::Receiver<u64> {
    STATE.faults.subscribe()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_opened_before_a_fault_are_retired_and_later_ones_kept() {
        let old = Duration::from_secs(3600);
        retire_connections();
        assert!(predates_last_fault(old));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!predates_last_fault(Duration::ZERO));
    }

    #[test]
    fn read_only_and_shutdown_errors_are_server_faults() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Kind::Busy);
        assert_eq!(classify(&sqlx::Error::RowNotFound), Kind::None);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&sqlx::Error::Io(io)), Kind::Server);
    }
}

//! Login rate limiting: wrong tokens are counted per client address, and once a client
//! has sent [`MAX_FAILURES`] wrong tokens within [`WINDOW`], its login attempts are
//! refused (429, with `Retry-After`) without looking at the token until the oldest of
//! them ages out. Correct logins are never counted; sessions already open and `/v1`
//! are unaffected. Behind a reverse proxy every client shares the proxy's address, so
//! the limit then applies to all of them together (still only to logins).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens a client may send within [`WINDOW`].
pub const MAX_FAILURES: usize = 10;
/// How long a wrong token counts against its client.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Clients tracked at most; past this, clients without a recent failure are forgotten
/// first, then the map is cleared (a flood of addresses must not grow memory).
const MAX_CLIENTS: usize = 10_000;

/// Failed logins per client address (`None`: the address is unknown, as in tests that
/// call the router directly).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<Option<IpAddr>, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// How long `client` must wait before it may try again, if it is limited now.
    pub fn retry_after(&self, client: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let times = map.get_mut(&client)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        if times.len() < MAX_FAILURES {
            return None;
        }
        times
            .front()
            .map(|oldest| WINDOW.saturating_sub(now.duration_since(*oldest)))
    }

    /// Records a wrong token from `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client) {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
            if map.len() >= MAX_CLIENTS {
                map.clear();
            }
        }
        let times = map.entry(client).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_limited_after_the_maximum_of_failures_and_others_are_not() {
        let l = LoginLimiter::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..MAX_FAILURES - 1 {
            l.failed(a);
        }
        assert_eq!(l.retry_after(a), None);
        l.failed(a);
        let wait = l.retry_after(a).expect("limited");
        assert!(wait <= WINDOW && wait > Duration::ZERO);
        assert_eq!(l.retry_after(b), None);
    }
}

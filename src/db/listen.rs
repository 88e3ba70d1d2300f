//! The process's one LISTEN connection: one task ([`Listener::run`]) owns it, LISTENs on
//! every install channel the process needs, and hands typed notifications to the
//! subscribers (the API's event fan-out, the worker) through broadcast channels.
//!
//! Owns the connection, its reconnects and the decoding of each channel's payload; it
//! decides nothing about jobs (the worker wakes its claimer or stops a job, the API
//! answers waits and streams). A broadcast channel never blocks its sender, so a slow
//! subscriber slows neither the listener nor, through it, the database: it is told it
//! lagged, and treats that as a resync.
//!
//! Every failure waits a backoff step with jitter and is logged once per step with a
//! count: a standby answers LISTEN with "cannot execute LISTEN during recovery" at
//! once, and retrying without a pause was a tight loop. After any gap the subscribers
//! get a resync, since notifications sent meanwhile are lost.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::events::{
    CHANNEL, CHANNEL_CANCEL, CHANNEL_ENQUEUED, Received, install_channels, parse_payload,
};
use super::{Error, Result};

/// First and longest pause between connection attempts (the same steps as re-targeting
/// a pool after a fault).
const MIN_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A connection up this long resets the backoff when it is lost.
const STABLE: Duration = Duration::from_secs(30);
/// Event batches kept for slow subscribers before they start missing some.
const EVENT_BUFFER: usize = 4096;
/// Work notices kept for a worker that falls behind. Missing some costs little: a
/// lagging worker claims at once, and a cancel it missed is found by its next
/// heartbeat, which reads `cancel_requested` with every lease it extends.
const WORK_BUFFER: usize = 1024;

/// What a worker hears: enqueues and cancels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A runnable job was enqueued on this queue (one notice per enqueue statement).
    Enqueued(String),
    /// An operator asked to cancel this running job.
    Cancel(Uuid),
    /// Notices may have been missed (the connection was just established): claim now.
    Resync,
}

/// Which notifications a process needs, and so which channels it LISTENs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topics {
    /// Job events ([`CHANNEL`]): the API's `/v1/events`, `?wait=` and pull waits.
    pub events: bool,
    /// Enqueues and cancels ([`CHANNEL_ENQUEUED`], [`CHANNEL_CANCEL`]): the worker.
    pub work: bool,
}

impl Topics {
    /// An API process.
    pub const EVENTS: Topics = Topics {
        events: true,
        work: false,
    };
    /// A worker process.
    pub const WORK: Topics = Topics {
        events: false,
        work: true,
    };
    /// API and worker in one process (`ordinaut dev`).
    pub const ALL: Topics = Topics {
        events: true,
        work: true,
    };

    fn channels(self) -> Vec<Channel> {
        let mut channels = Vec::new();
        if self.events {
            channels.push(Channel::Events);
        }
        if self.work {
            channels.extend([Channel::Enqueued, Channel::Cancel]);
        }
        channels
    }
}

/// The channels, by what their payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Events,
    Enqueued,
    Cancel,
}

impl Channel {
    fn base(self) -> &'static str {
        match self {
            Channel::Events => CHANNEL,
            Channel::Enqueued => CHANNEL_ENQUEUED,
            Channel::Cancel => CHANNEL_CANCEL,
        }
    }
}

/// A process's listener: subscribe through any clone; exactly one task runs
/// [`Listener::run`], which owns the connection.
#[derive(Clone)]
pub struct Listener {
    pool: PgPool,
    topics: Topics,
    events: broadcast::Sender<Received>,
    work: broadcast::Sender<Work>,
}

impl Listener {
    /// A listener for `topics` that connects with `pool`'s settings (and holds one of
    /// its connections while connected). Nothing connects before [`Listener::run`].
    pub fn new(pool: PgPool, topics: Topics) -> Listener {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (work, _) = broadcast::channel(WORK_BUFFER);
        Listener {
            pool,
            topics,
            events,
            work,
        }
    }

    /// The sender of job events, to subscribe to and to count subscribers by (the API's
    /// event gate also sends [`Received::Resync`] on it). Silent unless the topics
    /// include events.
    pub fn events(&self) -> &broadcast::Sender<Received> {
        &self.events
    }

    /// A receiver of enqueue and cancel notices. Silent unless the topics include work.
    pub fn subscribe_work(&self) -> broadcast::Receiver<Work> {
        self.work.subscribe()
    }

    /// Keeps one LISTEN connection and forwards what it hears until `stop`. Never exits
    /// on an error: it logs, backs off and reconnects; after every (re)connection it
    /// sends a resync to the subscribers of its topics.
    pub async fn run(self, stop: CancellationToken) {
        let mut delay = MIN_DELAY;
        // One log line per backoff step, with a count; never a tight loop.
        let mut failures: u64 = 0;
        loop {
            let session = tokio::select! {
                _ = stop.cancelled() => return,
                s = self.connect() => s,
            };
            match session {
                Ok(mut session) => {
                    if failures > 0 {
                        tracing::info!(failures, "LISTEN connection back");
                    } else {
                        tracing::debug!("LISTEN connected");
                    }
                    // Whatever was sent while we were away is unknown.
                    self.resync();
                    let since = Instant::now();
                    let Some(e) = self.forward(&mut session, &stop).await else {
                        return;
                    };
                    // A connection that stayed up a while is a fresh start for the backoff.
                    if since.elapsed() > STABLE {
                        failures = 0;
                        delay = MIN_DELAY;
                    }
                    failures += 1;
                    tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "LISTEN connection lost; reconnecting");
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "LISTEN failed; retrying");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(crate::model::jittered(delay)) => {}
            }
            delay = (delay * 2).min(MAX_DELAY);
        }
    }

    /// A connection LISTENing on the install's channels of our topics.
    async fn connect(&self) -> Result<Session> {
        let channels = self.topics.channels();
        let bases: Vec<&str> = channels.iter().map(|c| c.base()).collect();
        let names = install_channels(&self.pool, &bases).await?;
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener
            .listen_all(names.iter().map(String::as_str))
            .await?;
        Ok(Session {
            listener,
            channels: names.into_iter().zip(channels).collect(),
        })
    }

    /// Delivers notifications until the connection fails (Some(error)) or `stop` (None).
    async fn forward(&self, session: &mut Session, stop: &CancellationToken) -> Option<Error> {
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => return None,
                // try_recv reports a lost connection (None) instead of silently
                // reconnecting, so every gap goes through the backoff above.
                r = session.listener.try_recv() => r,
            };
            match received {
                Ok(Some(n)) => self.deliver(session.channel(n.channel()), n.payload()),
                Ok(None) => return Some(Error::Unavailable("connection closed".to_owned())),
                Err(e) => return Some(Error::from(e)),
            }
        }
    }

    /// Decodes one notification and sends it to its subscribers. Payloads that do not
    /// parse are skipped (only our triggers and statements send on these channels, but
    /// anyone may). A send fails only when nobody subscribes right now: not an error.
    fn deliver(&self, channel: Option<Channel>, payload: &str) {
        match channel {
            Some(Channel::Events) => match parse_payload(payload) {
                Some(events) => {
                    let _ = self.events.send(Received::Events(events));
                }
                None => tracing::debug!(channel = CHANNEL, "ignored an unparseable notification"),
            },
            Some(Channel::Enqueued) => {
                let _ = self.work.send(Work::Enqueued(payload.to_owned()));
            }
            Some(Channel::Cancel) => match payload.parse() {
                Ok(id) => {
                    let _ = self.work.send(Work::Cancel(id));
                }
                Err(_) => {
                    tracing::debug!(
                        channel = CHANNEL_CANCEL,
                        "ignored an unparseable notification"
                    )
                }
            },
            None => {}
        }
    }

    /// Tells the subscribers of our topics to re-read.
    fn resync(&self) {
        if self.topics.events {
            let _ = self.events.send(Received::Resync);
        }
        if self.topics.work {
            let _ = self.work.send(Work::Resync);
        }
    }
}

/// One connection LISTENing, and what each of its channels carries.
struct Session {
    listener: PgListener,
    /// The install's channel name of each channel.
    channels: Vec<(String, Channel)>,
}

impl Session {
    fn channel(&self, name: &str) -> Option<Channel> {
        self.channels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(topics: Topics) -> Listener {
        // Never connects: these tests only decode.
        let pool = PgPool::connect_lazy("postgres://localhost/unused").expect("a valid URL");
        Listener::new(pool, topics)
    }

    #[tokio::test]
    async fn each_channel_is_decoded_into_its_notice_and_garbage_is_skipped() {
        let l = listener(Topics::ALL);
        let mut events = l.events().subscribe();
        let mut work = l.subscribe_work();
        let id = Uuid::now_v7();
        l.deliver(Some(Channel::Enqueued), "q");
        l.deliver(Some(Channel::Cancel), "not a uuid");
        l.deliver(Some(Channel::Cancel), &id.to_string());
        l.deliver(Some(Channel::Events), "nonsense");
        l.deliver(
            Some(Channel::Events),
            &format!(r#"[["{id}","q","running"]]"#),
        );
        l.deliver(None, "q");
        assert_eq!(work.try_recv(), Ok(Work::Enqueued("q".to_owned())));
        assert_eq!(work.try_recv(), Ok(Work::Cancel(id)));
        assert!(work.try_recv().is_err(), "nothing else");
        let Ok(Received::Events(batch)) = events.try_recv() else {
            panic!("one batch of events");
        };
        assert_eq!((batch[0].id, batch[0].state.as_str()), (id, "running"));
        assert!(events.try_recv().is_err(), "nothing else");
    }

    #[tokio::test]
    async fn a_resync_goes_to_the_subscribers_of_its_topics_only() {
        let l = listener(Topics::EVENTS);
        let mut events = l.events().subscribe();
        let mut work = l.subscribe_work();
        l.resync();
        assert_eq!(events.try_recv(), Ok(Received::Resync));
        assert!(work.try_recv().is_err());
        assert_eq!(
            Topics::ALL.channels(),
            [Channel::Events, Channel::Enqueued, Channel::Cancel]
        );
        assert_eq!(
            Topics::WORK.channels(),
            [Channel::Enqueued, Channel::Cancel]
        );
    }
}

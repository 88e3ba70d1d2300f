//! The kinds registry as enqueuers see it: which kinds live workers serve, with their
//! defaults and payload schemas, and the checks an enqueue goes through.
//!
//! Workers publish their kinds (`db::kinds::publish`) at start and every
//! [`PUBLISH_INTERVAL`]. A kind is *known* when some worker published it within the
//! registry window (`registry.window`, 10 minutes by default), or when the enqueuer's
//! own configuration declares it. The unknown-kind check applies only once the
//! registry has a live entry at all: a fresh install whose workers have not started
//! yet (and a deploy that enqueues before its workers come up) is not refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{KindConfig, KindDefaults};
use crate::config::Config;
use crate::db::{
    self,
    kinds::{Published, PublishedKind},
};

pub use crate::config::kinds::PUBLISH_INTERVAL;
/// Longest progress message kept, in characters.
pub const MAX_PROGRESS_MESSAGE: usize = 200;
/// How long the API reuses a registry read for kinds it finds in it.
const CACHE_TTL: Duration = Duration::from_secs(2);

pub use crate::config::kinds::compile_schema;

/// What an enqueuer knows about one kind.
#[derive(Clone)]
pub struct KnownKind {
    /// Enqueue defaults.
    pub defaults: KindDefaults,
    /// Compiled payload schema.
    pub validator: Option<Arc<jsonschema::Validator>>,
    /// Whether a worker published it within the window (false: only in local config).
    pub served: bool,
}

impl std::fmt::Debug for KnownKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownKind")
            .field("defaults", &self.defaults)
            .field("schema", &self.validator.is_some())
            .field("served", &self.served)
            .finish()
    }
}

/// A read of the registry merged with the enqueuer's own configuration.
#[derive(Debug, Clone, Default)]
pub struct KindsView {
    kinds: BTreeMap<String, KnownKind>,
    /// Whether any worker published anything within the window.
    any_served: bool,
}

/// Why an enqueue is refused; `field` is the request field to name.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Field path (`kind`, `payload.repo`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl KindsView {
    /// The registry rows (newest first per kind) over the local configuration's kinds.
    pub fn build(rows: &[Published], config: &Config) -> KindsView {
        let mut kinds = BTreeMap::new();
        for (name, kind) in &config.kinds {
            kinds.insert(name.clone(), local(kind));
        }
        let mut any_served = false;
        for row in rows {
            any_served = true;
            if kinds
                .get(&row.kind.name)
                .is_some_and(|k: &KnownKind| k.served)
            {
                continue; // an older row of a kind already taken from a newer one
            }
            let validator = row
                .kind
                .payload_schema
                .as_ref()
                .and_then(|s| compile_schema(s).ok())
                .map(Arc::new);
            kinds.insert(
                row.kind.name.clone(),
                KnownKind {
                    defaults: KindDefaults {
                        queue: row.kind.queue.clone(),
                        priority: row.kind.priority,
                        max_attempts: row.kind.max_attempts,
                    },
                    validator,
                    served: true,
                },
            );
        }
        KindsView { kinds, any_served }
    }

    /// The kind, if known.
    pub fn get(&self, kind: &str) -> Option<&KnownKind> {
        self.kinds.get(kind)
    }

    /// The queue an enqueue of `kind` goes to (`given`, else the kind's, else
    /// `default`) and the kind's other defaults.
    pub fn resolve(&self, kind: &str, given: Option<String>) -> (String, KindDefaults) {
        let defaults = self
            .get(kind)
            .map(|k| k.defaults.clone())
            .unwrap_or_default();
        let queue = given
            .or_else(|| defaults.queue.clone())
            .unwrap_or_else(|| "default".to_owned());
        (queue, defaults)
    }

    /// Whether the unknown-kind check refuses `kind` (it applies once any worker has
    /// published within the window).
    pub fn refuses(&self, kind: &str) -> bool {
        self.any_served && !self.kinds.get(kind).is_some_and(|k| k.served)
    }

    /// The refusal message naming the served kinds.
    pub fn unknown_message(&self, kind: &str) -> String {
        let known: Vec<&str> = self
            .kinds
            .iter()
            .filter(|(_, k)| k.served)
            .map(|(n, _)| n.as_str())
            .collect();
        format!(
            "unknown kind '{kind}': no worker serves it; known: {}",
            known.join(", ")
        )
    }

    /// Checks an enqueue of `kind` with `payload`: the kind must be served (when
    /// `check_unknown`), the payload must match the kind's schema.
    pub fn check(&self, kind: &str, payload: &Value, check_unknown: bool) -> Result<(), Refusal> {
        if check_unknown && self.refuses(kind) {
            return Err(Refusal {
                field: "kind".to_owned(),
                reason: self.unknown_message(kind),
            });
        }
        if let Some(validator) = self.get(kind).and_then(|k| k.validator.as_ref())
            && let Some(error) = validator.iter_errors(payload).next()
        {
            let pointer = error.instance_path.to_string();
            let field = if pointer.is_empty() {
                "payload".to_owned()
            } else {
                // JSON pointer /a/b -> payload.a.b, as placeholders name fields.
                format!(
                    "payload{}",
                    pointer
                        .split('/')
                        .skip(1)
                        .map(|s| format!(".{}", s.replace("~1", "/").replace("~0", "~")))
                        .collect::<String>()
                )
            };
            return Err(Refusal {
                field,
                reason: format!("does not match the kind's payload_schema: {error}"),
            });
        }
        Ok(())
    }
}

fn local(kind: &KindConfig) -> KnownKind {
    KnownKind {
        defaults: kind.defaults(),
        validator: kind
            .payload_schema()
            .and_then(|s| compile_schema(s).ok())
            .map(Arc::new),
        served: false,
    }
}

/// Reads the registry now.
pub async fn read(pool: &db::Pool, config: &Config) -> db::Result<KindsView> {
    let rows = db::kinds::list(pool, config.registry.window).await?;
    Ok(KindsView::build(&rows, config))
}

/// The API's cached view: re-read at most every [`CACHE_TTL`] for kinds it knows,
/// and at once for a kind it does not (so a worker that just started is seen).
#[derive(Default)]
pub struct KindsCache {
    cached: Mutex<Option<(Instant, Arc<KindsView>)>>,
}

impl KindsCache {
    /// A view that knows every kind in `kinds` if the registry does.
    pub async fn view<'a>(
        &self,
        pool: &db::Pool,
        config: &Config,
        kinds: impl IntoIterator<Item = &'a str>,
    ) -> db::Result<Arc<KindsView>> {
        let current = self
            .cached
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, v)| v);
        if let Some(view) = current {
            let mut kinds = kinds.into_iter();
            if view.any_served && kinds.all(|k| !view.refuses(k)) {
                return Ok(view);
            }
        }
        let view = Arc::new(read(pool, config).await?);
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((Instant::now(), view.clone()));
        }
        Ok(view)
    }
}

/// One kind in `GET /v1/kinds` and `ordinaut kinds`: the newest publisher's settings
/// and who publishes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KindListing {
    /// The kind, as its newest publisher has it.
    #[serde(flatten)]
    pub kind: PublishedKind,
    /// Who publishes it.
    #[serde(flatten)]
    pub publishers: KindPublishers,
}

crate::model::flat_schema::flat_schema!(
    KindListing as "KindListing",
    "One kind in `GET /v1/kinds` and `ordinaut kinds`.",
    [PublishedKind, KindPublishers]
);

/// The publishers of a kind: the second part of [`KindListing`].
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KindPublishers {
    /// Newest publish of the kind by any worker.
    pub last_published_at: chrono::DateTime<chrono::Utc>,
    /// Workers that published it within the registry window, newest first.
    pub workers: Vec<KindWorker>,
}

/// A worker serving a kind.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KindWorker {
    /// Worker id.
    pub id: uuid::Uuid,
    /// Its host.
    pub hostname: String,
    /// False once the worker has exited or was judged dead (its kinds stay known for
    /// the registry window).
    pub alive: bool,
    /// Its last publish.
    pub published_at: chrono::DateTime<chrono::Utc>,
}

/// Groups registry rows (ordered by kind, newest first) into listings; the settings
/// shown are the newest publisher's.
pub fn listings(rows: Vec<Published>) -> Vec<KindListing> {
    let mut out: Vec<KindListing> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let worker = KindWorker {
            id: row.worker_id,
            hostname: row.hostname.clone(),
            alive: row.worker_alive,
            published_at: row.published_at,
        };
        match index.get(&row.kind.name) {
            Some(&i) => out[i].publishers.workers.push(worker),
            None => {
                index.insert(row.kind.name.clone(), out.len());
                out.push(KindListing {
                    kind: row.kind,
                    publishers: KindPublishers {
                        last_published_at: row.published_at,
                        workers: vec![worker],
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(kind: &str, schema: Option<Value>) -> Published {
        Published {
            kind: PublishedKind {
                name: kind.to_owned(),
                kind_type: "command".to_owned(),
                queue: Some("scans".to_owned()),
                priority: None,
                max_attempts: None,
                timeout_ms: None,
                kill_grace_ms: None,
                payload_schema: schema,
            },
            worker_id: uuid::Uuid::nil(),
            hostname: "h".to_owned(),
            published_at: chrono::Utc::now(),
            worker_alive: true,
        }
    }

    #[test]
    fn unknown_kinds_are_refused_only_once_something_is_served() {
        let config = Config::default();
        let empty = KindsView::build(&[], &config);
        assert!(empty.check("anything", &json!({}), true).is_ok());
        let view = KindsView::build(&[row("scan", None), row("deploy", None)], &config);
        let err = view.check("scna", &json!({}), true).unwrap_err();
        assert_eq!(err.field, "kind");
        assert_eq!(
            err.reason,
            "unknown kind 'scna': no worker serves it; known: deploy, scan"
        );
        assert!(view.check("scna", &json!({}), false).is_ok());
    }

    #[test]
    fn schema_errors_name_the_field() {
        let schema = json!({
            "type": "object",
            "required": ["repo"],
            "properties": {"repo": {"type": "string"}, "depth": {"type": "integer", "maximum": 5}}
        });
        let view = KindsView::build(&[row("scan", Some(schema))], &Config::default());
        let err = view
            .check("scan", &json!({"repo": "r", "depth": 9}), true)
            .unwrap_err();
        assert_eq!(err.field, "payload.depth");
        let err = view.check("scan", &json!({"depth": 1}), true).unwrap_err();
        assert_eq!(err.field, "payload");
        assert!(err.reason.contains("repo"), "{}", err.reason);
        assert!(
            view.check("scan", &json!({"repo": "r", "depth": 2}), true)
                .is_ok()
        );
    }
}

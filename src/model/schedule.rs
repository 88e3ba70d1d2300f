//! Schedules: what a caller gives (CLI, API, ordinaut.toml) and the validated spec
//! stored; the rules written once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Invalid, check_name, cron, limits, validate_priority};

/// A schedule's fields as given by a caller (CLI, API, file), before validation. In
/// ordinaut.toml a schedule is a table `[schedules.NAME]` of these fields but `name`,
/// which comes from the table's key.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// Name (in the file: the table's key).
    #[serde(skip)]
    pub name: String,
    /// Cron expression (5 or 6 fields, or @daily-style).
    pub cron: String,
    /// IANA timezone; None = TZ.
    pub timezone: Option<String>,
    /// Job queue.
    pub queue: String,
    /// Job kind.
    pub kind: String,
    /// Job payload (in the file a TOML table, sent as JSON).
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    /// Job priority.
    #[serde(default)]
    pub priority: i32,
    /// Job max attempts.
    pub max_attempts: Option<i32>,
    /// Job timeout.
    #[serde(default, with = "super::opt_duration")]
    pub timeout: Option<Duration>,
    /// Job unique key.
    pub unique_key: Option<String>,
    /// allow (default) or skip.
    pub overlap: Option<String>,
    /// Misfire grace for this schedule.
    #[serde(default, with = "super::opt_duration")]
    pub misfire_grace: Option<Duration>,
}

// The stored schedule (db::schedules::ScheduleRow, the API's `Schedule`) embeds this:
// its field docs are the OpenAPI document's.
/// What a schedule is: its cadence and the job it makes, validated.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ScheduleSpec {
    /// Unique name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// IANA timezone.
    pub timezone: String,
    /// Job queue.
    pub queue: String,
    /// Job kind.
    pub kind: String,
    /// Job payload.
    pub payload: serde_json::Value,
    /// Job priority.
    pub priority: i16,
    /// Job max attempts.
    pub max_attempts: Option<i32>,
    /// Job timeout in ms.
    pub timeout_ms: Option<i64>,
    /// Job unique key.
    pub unique_key: Option<String>,
    /// allow | skip.
    pub overlap: String,
    /// Misfire grace in ms (null: SCHEDULER_MISFIRE_GRACE_TIME).
    pub misfire_grace_ms: Option<i64>,
}

impl ScheduleSpec {
    /// The job timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(|ms| Duration::from_millis(ms as u64))
    }

    /// The misfire grace; None = the configured default.
    pub fn misfire_grace(&self) -> Option<Duration> {
        self.misfire_grace_ms
            .map(|ms| Duration::from_millis(ms as u64))
    }
}

/// Where a schedule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Declared in ordinaut.toml: the scheduler keeps it in line with the file.
    Declared,
    /// Created through the API or CLI.
    Api,
}

/// The settings a schedule is checked against.
#[derive(Debug, Clone)]
pub struct ScheduleRules {
    /// The timezone of a schedule that names none (TZ).
    pub default_timezone: String,
    /// Largest payload, in bytes of JSON.
    pub max_payload_bytes: usize,
}

/// Validates a schedule; the error names the field and the problem.
pub fn validate(input: &ScheduleInput, rules: &ScheduleRules) -> Result<ScheduleSpec, Invalid> {
    check_name("name", &input.name)?;
    cron::CronExpr::parse(&input.cron).map_err(|r| Invalid::new("cron", r))?;
    let timezone = input
        .timezone
        .clone()
        .unwrap_or_else(|| rules.default_timezone.clone());
    cron::parse_timezone(&timezone).map_err(|r| Invalid::new("timezone", r))?;
    check_name("queue", &input.queue)?;
    check_name("kind", &input.kind)?;
    let priority = validate_priority(input.priority).map_err(|r| Invalid::new("priority", r))?;
    if let Some(n) = input.max_attempts {
        limits::check_max_attempts("max_attempts", n)?;
    }
    if let Some(k) = &input.unique_key {
        limits::check_key("unique_key", k)?;
    }
    let overlap = input.overlap.clone().unwrap_or_else(|| "allow".to_owned());
    if overlap != "allow" && overlap != "skip" {
        return Err(Invalid::new(
            "overlap",
            format!("{overlap:?} must be allow or skip"),
        ));
    }
    let payload = input
        .payload
        .clone()
        .unwrap_or_else(|| serde_json::json!({}));
    if payload.to_string().len() > rules.max_payload_bytes {
        return Err(Invalid::new(
            "payload",
            format!("exceeds the limit of {} bytes", rules.max_payload_bytes),
        ));
    }
    Ok(ScheduleSpec {
        name: input.name.clone(),
        cron: input.cron.trim().to_owned(),
        timezone,
        queue: input.queue.clone(),
        kind: input.kind.clone(),
        payload,
        priority,
        max_attempts: input.max_attempts,
        timeout_ms: input.timeout.map(|t| t.as_millis().max(1) as i64),
        unique_key: input.unique_key.clone(),
        overlap,
        misfire_grace_ms: input.misfire_grace.map(|g| g.as_millis() as i64),
    })
}

/// The first fire time of `spec` after `now`.
pub fn first_fire(spec: &ScheduleSpec, now: DateTime<Utc>) -> Result<DateTime<Utc>, Invalid> {
    let cron = cron::CronExpr::parse(&spec.cron).map_err(|r| Invalid::new("cron", r))?;
    let tz = cron::parse_timezone(&spec.timezone).map_err(|r| Invalid::new("timezone", r))?;
    cron.next_after(now, tz).ok_or_else(|| {
        Invalid::new(
            "cron",
            format!("cron expression {:?} never fires again", spec.cron),
        )
    })
}

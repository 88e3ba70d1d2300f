//! libpq connection strings: `postgres://` URLs (with several `host:port` pairs) and
//! `key=value` strings, with `target_session_attrs`.
//!
//! sqlx parses single-host URLs only ("invalid port number" on `a:1,b:2`), so Ordinaut
//! parses the string itself into a list of endpoints plus everything else, and builds a
//! single-host sqlx [`PgConnectOptions`] per endpoint. The rest of libpq's parameters
//! (sslmode, sslrootcert, options, application_name, ...) are handed to sqlx unchanged.
//! Errors name the bad part of the string and never repeat the password.
//!
//! Files by concern: this one holds the parsed form and its redacted text; `parse`
//! reads the two string forms, `options` turns one endpoint into sqlx options.

mod options;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use parse::{encode, parse_keywords, parse_url};

/// What a connection must be to be kept, as libpq's `target_session_attrs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// Any server that accepts the connection.
    Any,
    /// `SHOW transaction_read_only` is off.
    ReadWrite,
    /// `SHOW transaction_read_only` is on.
    ReadOnly,
    /// Not in recovery (`pg_is_in_recovery()` is false).
    Primary,
    /// In recovery.
    Standby,
    /// A standby if one is listed and up, else any server.
    PreferStandby,
}

impl SessionAttrs {
    /// Whether a server in this state satisfies the attribute (`PreferStandby` accepts
    /// anything here; its standby-first order is the caller's).
    pub fn accepts(self, in_recovery: bool, read_only: bool) -> bool {
        match self {
            SessionAttrs::Any | SessionAttrs::PreferStandby => true,
            SessionAttrs::ReadWrite => !read_only,
            SessionAttrs::ReadOnly => read_only,
            SessionAttrs::Primary => !in_recovery,
            SessionAttrs::Standby => in_recovery,
        }
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Primary => "primary",
            SessionAttrs::Standby => "standby",
            SessionAttrs::PreferStandby => "prefer-standby",
        }
    }
}

impl FromStr for SessionAttrs {
    type Err = ConnStrError;

    fn from_str(s: &str) -> Result<Self, ConnStrError> {
        Ok(match s {
            "any" => SessionAttrs::Any,
            "read-write" => SessionAttrs::ReadWrite,
            "read-only" => SessionAttrs::ReadOnly,
            "primary" => SessionAttrs::Primary,
            "standby" => SessionAttrs::Standby,
            "prefer-standby" => SessionAttrs::PreferStandby,
            other => {
                return Err(ConnStrError(format!(
                    "invalid target_session_attrs {other:?} (expected any, read-write, read-only, primary, standby or prefer-standby)"
                )));
            }
        })
    }
}

/// A connection string that does not parse; the message names the bad part and never
/// contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid connection string: {0}")]
pub struct ConnStrError(String);

pub(super) fn bad(message: impl Into<String>) -> ConnStrError {
    ConnStrError(message.into())
}

/// One server to try: a host name, IP address or Unix socket directory, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name, IP address, or a socket directory (starts with `/`); empty means the
    /// default (`PGHOST`, else the local socket).
    pub host: String,
    /// Port; `None` means the default (`PGPORT`, else 5432).
    pub port: Option<u16>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.is_empty() {
            "default host"
        } else {
            &self.host
        };
        match self.port {
            Some(p) if host.contains(':') => write!(f, "[{host}]:{p}"),
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(host),
        }
    }
}

/// A parsed connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnStr {
    /// Servers in the order they are tried (never empty).
    pub endpoints: Vec<Endpoint>,
    /// What a connection must be to be kept.
    pub target: SessionAttrs,
    /// Seconds to wait for one server (libpq's `connect_timeout`), if given.
    pub connect_timeout: Option<u64>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    /// Every other parameter, passed to sqlx as given.
    params: Vec<(String, String)>,
}

// The password never reaches a log through Debug.
impl fmt::Debug for ConnStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl ConnStr {
    /// Parses a URL (`postgres://` or `postgresql://`) or a `key=value` string; hosts,
    /// ports and `target_session_attrs` the string leaves out come from `PGHOST`,
    /// `PGPORT` and `PGTARGETSESSIONATTRS`.
    pub fn parse(s: &str) -> Result<ConnStr, ConnStrError> {
        Self::parse_with_env(s, |k| std::env::var(k).ok())
    }

    /// [`ConnStr::parse`] with the environment given (tests).
    pub fn parse_with_env(
        s: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ConnStr, ConnStrError> {
        let s = s.trim();
        let raw = if let Some(rest) = s
            .strip_prefix("postgresql://")
            .or_else(|| s.strip_prefix("postgres://"))
        {
            parse_url(rest)?
        } else if s.contains("://") {
            let scheme = s.split("://").next().unwrap_or_default();
            return Err(bad(format!(
                "unsupported scheme {scheme:?} (expected postgres:// or postgresql://)"
            )));
        } else {
            parse_keywords(s)?
        };
        raw.finish(env)
    }

    /// The string for messages: endpoints, user and database, no password.
    pub fn redacted(&self) -> String {
        let hosts: Vec<String> = self.endpoints.iter().map(|e| e.to_string()).collect();
        let mut out = String::from("postgresql://");
        if let Some(u) = &self.user {
            out.push_str(&encode(u));
            if self.password.is_some() {
                out.push_str(":***");
            }
            out.push('@');
        }
        out.push_str(&hosts.join(","));
        out.push('/');
        if let Some(d) = &self.dbname {
            out.push_str(&encode(d));
        }
        if self.target != SessionAttrs::Any {
            out.push_str("?target_session_attrs=");
            out.push_str(self.target.as_str());
        }
        out
    }
}

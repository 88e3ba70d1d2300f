//! libpq connection strings: `postgres://` URLs (with several `host:port` pairs) and
//! `key=value` strings, with `target_session_attrs`.
//!
//! sqlx parses single-host URLs only ("invalid port number" on `a:1,b:2`), so Ordinaut
//! parses the string itself into a list of endpoints plus everything else, and builds a
//! single-host sqlx [`PgConnectOptions`] per endpoint. The rest of libpq's parameters
//! (sslmode, sslrootcert, options, application_name, ...) are handed to sqlx unchanged.
//! Errors name the bad part of the string and never repeat the password.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

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

fn bad(message: impl Into<String>) -> ConnStrError {
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

    /// Single-host sqlx options for endpoint `i` (everything but the host list applied).
    pub fn options_for(&self, i: usize) -> Result<PgConnectOptions, ConnStrError> {
        let endpoint = &self.endpoints[i];
        let mut query: Vec<(&str, &str)> = Vec::new();
        if !endpoint.host.is_empty() {
            query.push(("host", &endpoint.host));
        }
        let port = endpoint.port.map(|p| p.to_string());
        if let Some(p) = &port {
            query.push(("port", p));
        }
        if let Some(u) = &self.user {
            query.push(("user", u));
        }
        if let Some(p) = &self.password {
            query.push(("password", p));
        }
        if let Some(d) = &self.dbname {
            query.push(("dbname", d));
        }
        for (k, v) in &self.params {
            query.push((k, v));
        }
        let mut url = String::from("postgresql:///?");
        for (n, (k, v)) in query.iter().enumerate() {
            if n > 0 {
                url.push('&');
            }
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(v));
        }
        PgConnectOptions::from_str(&url).map_err(|e| {
            // sqlx's messages name the parameter, not the URL; keep the password out anyway.
            let message = e.to_string();
            match &self.password {
                Some(p) if !p.is_empty() => bad(message.replace(p.as_str(), "***")),
                _ => bad(message),
            }
        })
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

/// What the string itself says, before defaults.
#[derive(Default)]
struct Raw {
    hosts: Option<Vec<String>>,
    ports: Option<Vec<String>>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    target: Option<String>,
    connect_timeout: Option<String>,
    params: Vec<(String, String)>,
}

impl Raw {
    fn set(&mut self, key: &str, value: String) -> Result<(), ConnStrError> {
        match key {
            "host" | "hostaddr" => self.hosts = Some(split_list(&value)),
            "port" => self.ports = Some(split_list(&value)),
            "user" => self.user = Some(value),
            "password" => self.password = Some(value),
            "dbname" => self.dbname = Some(value),
            "target_session_attrs" => self.target = Some(value),
            "connect_timeout" => self.connect_timeout = Some(value),
            "" => return Err(bad("a parameter has an empty name")),
            _ => self.params.push((key.to_owned(), value)),
        }
        Ok(())
    }

    fn finish(self, env: impl Fn(&str) -> Option<String>) -> Result<ConnStr, ConnStrError> {
        let hosts = match self.hosts {
            Some(h) => h,
            None => env("PGHOST")
                .or_else(|| env("PGHOSTADDR"))
                .map(|h| split_list(&h))
                .unwrap_or_else(|| vec![String::new()]),
        };
        let (ports, port_source) = match self.ports {
            Some(p) => (p, "port"),
            None => (
                env("PGPORT")
                    .map(|p| split_list(&p))
                    .unwrap_or_else(|| vec![String::new()]),
                "PGPORT",
            ),
        };
        if ports.len() != 1 && ports.len() != hosts.len() {
            return Err(bad(format!(
                "{} ports given for {} hosts (give one port for all, or one per host)",
                ports.len(),
                hosts.len()
            )));
        }
        let mut endpoints = Vec::with_capacity(hosts.len());
        for (i, host) in hosts.into_iter().enumerate() {
            let port_text = if ports.len() == 1 {
                &ports[0]
            } else {
                &ports[i]
            };
            let port = if port_text.is_empty() {
                None
            } else {
                match port_text.parse::<u16>() {
                    Ok(p) if p > 0 => Some(p),
                    _ => {
                        return Err(bad(format!(
                            "invalid port {port_text:?} in {port_source} (host {})",
                            i + 1
                        )));
                    }
                }
            };
            endpoints.push(Endpoint { host, port });
        }
        let target = match self.target {
            Some(t) => t.parse()?,
            None => match env("PGTARGETSESSIONATTRS") {
                Some(t) if !t.is_empty() => t
                    .parse()
                    .map_err(|e: ConnStrError| bad(format!("PGTARGETSESSIONATTRS: {}", e.0)))?,
                _ => SessionAttrs::Any,
            },
        };
        let connect_timeout = match self.connect_timeout {
            None => None,
            Some(t) if t.is_empty() => None,
            Some(t) => match t.trim().parse::<i64>() {
                // libpq: zero, negative or unset means wait indefinitely.
                Ok(n) if n <= 0 => None,
                Ok(n) => Some(n.max(2) as u64),
                Err(_) => return Err(bad(format!("invalid connect_timeout {t:?}"))),
            },
        };
        Ok(ConnStr {
            endpoints,
            target,
            connect_timeout,
            user: self.user.filter(|u| !u.is_empty()),
            password: self.password,
            dbname: self.dbname.filter(|d| !d.is_empty()),
            params: self.params,
        })
    }
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(|s| s.trim().to_owned()).collect()
}

/// `[user[:password]@][host[:port][,host[:port]...]][/dbname][?key=value&...]`
fn parse_url(rest: &str) -> Result<Raw, ConnStrError> {
    let mut raw = Raw::default();
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    // The password may contain '@' only percent-encoded; the last '@' ends userinfo.
    let hostlist = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            raw.user = Some(decode(user, "user name")?);
            if let Some(p) = password {
                // Never echo the password, not even in a decoding error.
                raw.password = Some(decode(p, "password")?);
            }
            hosts
        }
        None => authority,
    };
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for (i, entry) in hostlist.split(',').enumerate() {
            let (host, port) = split_host_port(entry)
                .ok_or_else(|| bad(format!("invalid host entry {:?} (host {})", entry, i + 1)))?;
            if !port.is_empty() && port.parse::<u16>().is_err() {
                return Err(bad(format!(
                    "invalid port {port:?} for host {:?} (host {})",
                    host,
                    i + 1
                )));
            }
            hosts.push(decode(host, "host")?);
            ports.push(port.to_owned());
        }
        raw.hosts = Some(hosts);
        if ports.iter().any(|p| !p.is_empty()) {
            raw.ports = Some(ports);
        }
    }
    if let Some(path) = path
        && !path.is_empty()
    {
        raw.dbname = Some(decode(path, "database name")?);
    }
    if let Some(query) = query {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                bad(format!(
                    "query parameter {:?} has no value",
                    pair.chars().take(40).collect::<String>()
                ))
            })?;
            let key = decode(k, "parameter name")?;
            let value = decode(v, &format!("value of {key}"))?;
            raw.set(&key, value)?;
        }
    }
    Ok(raw)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; None when the brackets do not close.
fn split_host_port(entry: &str) -> Option<(&str, &str)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, "")),
            a => a.strip_prefix(':').map(|port| (host, port)),
        };
    }
    Some(match entry.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (entry, ""),
    })
}

/// `key = value` pairs separated by whitespace; values may be single-quoted, and `\`
/// escapes the next character.
fn parse_keywords(s: &str) -> Result<Raw, ConnStrError> {
    let mut raw = Raw::default();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(format!(
                "missing \"=\" after {:?} (expected key=value pairs or a postgres:// URL)",
                key.chars().take(40).collect::<String>()
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(e) => value.push(e),
                        None => break,
                    },
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(bad(format!("unterminated quoted value for {key:?}")));
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(e) = chars.next() {
                        value.push(e);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        raw.set(&key, value)?;
    }
    Ok(raw)
}

fn decode(text: &str, what: &str) -> Result<String, ConnStrError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("invalid percent-encoding in the {what}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("the {what} is not valid UTF-8")))
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(s: &str) -> ConnStr {
        ConnStr::parse_with_env(s, no_env).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        ConnStr::parse_with_env(s, no_env).expect_err(s).to_string()
    }

    fn ep(host: &str, port: Option<u16>) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn the_multi_host_url_of_issue_21_parses() {
        let c = parse(
            "postgresql://u@127.0.0.1:57201,127.0.0.1:57202/postgres?target_session_attrs=read-write",
        );
        assert_eq!(
            c.endpoints,
            vec![ep("127.0.0.1", Some(57201)), ep("127.0.0.1", Some(57202))]
        );
        assert_eq!(c.target, SessionAttrs::ReadWrite);
        let o = c.options_for(1).unwrap();
        assert_eq!(o.get_host(), "127.0.0.1");
        assert_eq!(o.get_port(), 57202);
        assert_eq!(o.get_username(), "u");
        assert_eq!(o.get_database(), Some("postgres"));
    }

    #[test]
    fn keyword_strings_parse_with_port_lists_and_quotes() {
        let c = parse(
            "host=a,b port=5432,5433 dbname=jobs user=ord password='p w' target_session_attrs=primary sslmode=disable",
        );
        assert_eq!(c.endpoints, vec![ep("a", Some(5432)), ep("b", Some(5433))]);
        assert_eq!(c.target, SessionAttrs::Primary);
        let c = parse(r"host = /tmp dbname='my db' password='a \' b'");
        assert_eq!(c.endpoints, vec![ep("/tmp", None)]);
        let o = c.options_for(0).unwrap();
        assert_eq!(o.get_database(), Some("my db"));
        assert_eq!(
            o.get_socket().map(|p| p.to_string_lossy().into_owned()),
            Some("/tmp".into())
        );
        // One port for every host.
        let c = parse("host=a,b,c port=6000");
        assert!(c.endpoints.iter().all(|e| e.port == Some(6000)));
    }

    #[test]
    fn urls_take_ipv6_percent_encoding_and_query_hosts() {
        let c = parse("postgres://u:p%40ss@[::1]:5433,db.example:5434/d%20b?sslmode=disable");
        assert_eq!(
            c.endpoints,
            vec![ep("::1", Some(5433)), ep("db.example", Some(5434))]
        );
        let o = c.options_for(0).unwrap();
        assert_eq!(o.get_database(), Some("d b"));
        let c = parse("postgresql:///jobs?host=h1,h2&port=1,2&target_session_attrs=read-only");
        assert_eq!(c.endpoints, vec![ep("h1", Some(1)), ep("h2", Some(2))]);
        assert_eq!(c.target, SessionAttrs::ReadOnly);
        // A single ordinary URL keeps working.
        let c = parse("postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(c.endpoints, vec![ep("127.0.0.1", Some(5432))]);
        assert_eq!(c.target, SessionAttrs::Any);
    }

    #[test]
    fn the_environment_fills_what_the_string_leaves_out() {
        let env = |k: &str| match k {
            "PGHOST" => Some("x,y".to_owned()),
            "PGPORT" => Some("7000".to_owned()),
            "PGTARGETSESSIONATTRS" => Some("read-write".to_owned()),
            _ => None,
        };
        let c = ConnStr::parse_with_env("dbname=d", env).unwrap();
        assert_eq!(c.endpoints, vec![ep("x", Some(7000)), ep("y", Some(7000))]);
        assert_eq!(c.target, SessionAttrs::ReadWrite);
        // The string wins over the environment.
        let c = ConnStr::parse_with_env("host=z target_session_attrs=any", env).unwrap();
        assert_eq!(c.endpoints, vec![ep("z", Some(7000))]);
        assert_eq!(c.target, SessionAttrs::Any);
        let bad_env = |k: &str| (k == "PGTARGETSESSIONATTRS").then(|| "rw".to_owned());
        let e = ConnStr::parse_with_env("host=a", bad_env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PGTARGETSESSIONATTRS") && e.contains("\"rw\""),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_bad_part_and_never_the_password() {
        let e = err("postgresql://u:secret@h1:5432,h2:54x2/db");
        assert!(e.contains("\"54x2\"") && e.contains("host 2"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = err("postgresql://u:secret@h1/db?target_session_attrs=master");
        assert!(e.contains("target_session_attrs \"master\""), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = err("host=a,b,c port=1,2 password=secret");
        assert!(e.contains("2 ports given for 3 hosts"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = err("host=a password='secret");
        assert!(
            e.contains("unterminated quoted value for \"password\""),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
        let e = err("postgresql://u:sec%zzret@h/db");
        assert!(e.contains("percent-encoding in the password"), "{e}");
        assert!(!e.contains("sec"), "{e}");
        let e = err("mysql://u@h/db");
        assert!(e.contains("\"mysql\""), "{e}");
        let e = err("just-a-word");
        assert!(e.contains("missing \"=\" after \"just-a-word\""), "{e}");
        let e = err("postgresql://u@[::1/db");
        assert!(e.contains("invalid host entry"), "{e}");
    }

    #[test]
    fn redacted_shows_hosts_but_not_the_password() {
        let c = parse(
            "host=a,b port=1,2 user=u password=secret dbname=d target_session_attrs=read-write",
        );
        let shown = c.redacted();
        assert_eq!(
            shown,
            "postgresql://u:***@a:1,b:2/d?target_session_attrs=read-write"
        );
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn redact_hides_passwords_in_the_user_part_and_the_query() {
        // The redacted form is the parsed string written back (scheme `postgresql://`).
        assert_eq!(
            parse("postgres://app:hunter2@db:5432/jobs").redacted(),
            "postgresql://app:***@db:5432/jobs"
        );
        let shown =
            parse("postgres://app@db/jobs?sslmode=require&password=hunter2&sslpassword=k3y")
                .redacted();
        assert!(
            !shown.contains("hunter2") && !shown.contains("k3y"),
            "{shown}"
        );
        assert!(shown.contains("app:***@db"), "{shown}");
        let plain = parse("postgres://db/jobs?sslmode=disable").redacted();
        assert!(plain.contains("db/jobs"), "{plain}");
        assert!(!plain.contains("***"), "{plain}");
    }

    #[test]
    fn attributes_accept_the_servers_libpq_would() {
        use SessionAttrs::*;
        // (in_recovery, read_only)
        assert!(ReadWrite.accepts(false, false));
        assert!(!ReadWrite.accepts(false, true));
        assert!(!ReadWrite.accepts(true, true));
        assert!(Primary.accepts(false, true));
        assert!(!Primary.accepts(true, true));
        assert!(Standby.accepts(true, true));
        assert!(ReadOnly.accepts(false, true));
        assert!(Any.accepts(true, true));
    }
}

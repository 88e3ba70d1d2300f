//! Reading the two forms libpq accepts (`postgres://` URLs and `key=value` strings)
//! into a [`ConnStr`], with the environment filling what the string leaves out.

use super::{ConnStr, ConnStrError, Endpoint, SessionAttrs, bad};

/// What the string itself says, before defaults.
#[derive(Default)]
pub(super) struct Raw {
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

    pub(super) fn finish(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ConnStr, ConnStrError> {
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
pub(super) fn parse_url(rest: &str) -> Result<Raw, ConnStrError> {
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
pub(super) fn parse_keywords(s: &str) -> Result<Raw, ConnStrError> {
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

pub(super) fn decode(text: &str, what: &str) -> Result<String, ConnStrError> {
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

pub(super) fn encode(text: &str) -> String {
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

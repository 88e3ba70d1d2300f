//! One endpoint of a [`ConnStr`] as single-host sqlx options: the endpoint's host and
//! port plus every other parameter, passed as a query string sqlx parses.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::parse::encode;
use super::{ConnStr, ConnStrError, bad};

impl ConnStr {
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
}

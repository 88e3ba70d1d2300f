//! `ui_sessions`: dashboard logins (migration 0013). The cookie holds a random id; this
//! table holds only its SHA-256, the role, which token logged in, and the CSRF token.
//! Nothing here decides who may log in: `ui::auth` checks the token first.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

use super::Result;

/// A live session.
#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    /// `admin` or `readonly`.
    pub role: String,
    /// Which token logged in (its position, never its text).
    pub actor: String,
    /// SHA-256 of the token that logged in.
    pub token_hash: Vec<u8>,
    /// The CSRF token every state-changing request must send back.
    pub csrf: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A session to store.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// SHA-256 of the cookie's session id.
    pub id_hash: &'a [u8],
    /// `admin` or `readonly`.
    pub role: &'a str,
    /// Which token logged in.
    pub actor: &'a str,
    /// SHA-256 of that token.
    pub token_hash: &'a [u8],
    /// CSRF token.
    pub csrf: &'a str,
    /// Lifetime in seconds.
    pub ttl_seconds: f64,
}

const DELETE_EXPIRED: &str = "DELETE FROM ui_sessions WHERE expires_at <= now()";

const INSERT_SESSION: &str = "\
INSERT INTO ui_sessions (id_hash, role, actor, token_hash, csrf, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))";

/// Stores a new session, first deleting expired ones (ui_sessions_expires_idx): logins
/// are rare, so this keeps the table at the live sessions without a maintenance loop.
pub async fn create_session(pool: &PgPool, s: &NewSession<'_>) -> Result<()> {
    sqlx::query(DELETE_EXPIRED).execute(pool).await?;
    sqlx::query(INSERT_SESSION)
        .bind(s.id_hash)
        .bind(s.role)
        .bind(s.actor)
        .bind(s.token_hash)
        .bind(s.csrf)
        .bind(s.ttl_seconds)
        .execute(pool)
        .await?;
    Ok(())
}

const GET_SESSION: &str = "\
SELECT role, actor, token_hash, csrf, expires_at
FROM ui_sessions WHERE id_hash = $1 AND expires_at > now()";

/// The unexpired session with this id hash (primary-key lookup).
pub async fn get_session(pool: &PgPool, id_hash: &[u8]) -> Result<Option<SessionRow>> {
    Ok(sqlx::query_as(GET_SESSION)
        .bind(id_hash)
        .fetch_optional(pool)
        .await?)
}

/// Ends a session (logout, or its token was removed from the configuration).
pub async fn delete_session(pool: &PgPool, id_hash: &[u8]) -> Result<()> {
    sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(pool)
        .await?;
    Ok(())
}

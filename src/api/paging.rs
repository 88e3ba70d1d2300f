//! Cursor pages of the newest-first lists (jobs, workflows): reading the cursor a
//! previous page handed out, and handing out the next one.

use uuid::Uuid;

use super::error::{ApiError, ApiResult};

/// The `cursor` query field: an id a previous page returned as `next_cursor`.
pub fn parse_cursor(cursor: Option<&str>) -> ApiResult<Option<Uuid>> {
    cursor
        .map(|c| {
            Uuid::parse_str(c)
                .map_err(|_| ApiError::invalid("cursor", "not a cursor returned by this API"))
        })
        .transpose()
}

/// The key of a full page's last item, which the next page starts after; None for a
/// short page, which is the last.
pub fn next_key<T, K>(items: &[T], limit: i64, key: impl FnOnce(&T) -> K) -> Option<K> {
    if items.len() as i64 == limit {
        items.last().map(key)
    } else {
        None
    }
}

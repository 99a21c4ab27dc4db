//! Rendering shared by the native API and batches: an item as the native `data` object,
//! times as RFC 3339, the consistency header's value.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::HeaderValue;

use crate::model::command::Item;

pub fn rfc3339(ms: u64) -> String {
    // humantime formats only up to the end of year 9999; later expiries are clamped there.
    const LAST_MS: u64 = 253_402_300_799_999;
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.min(LAST_MS))).to_string()
}

/// An item as the native `data` object. The stored value is already canonical JSON text, so
/// it is spliced in rather than parsed and re-serialised.
pub fn item_json_text(item: &Item, with_value: bool) -> String {
    let key = serde_json::to_string(&item.key).unwrap_or_else(|_| "\"\"".into());
    let expires = item.expires_at.map(|t| format!("\"{}\"", rfc3339(t))).unwrap_or_else(|| "null".into());
    let value = if with_value { format!(r#","value":{}"#, item.value) } else { String::new() };
    format!(r#"{{"key":{key}{value},"version":"{}","expiresAt":{expires}}}"#, item.version)
}

pub fn consistency_header(strong: bool) -> HeaderValue {
    HeaderValue::from_static(if strong { "linearizable" } else { "stale" })
}

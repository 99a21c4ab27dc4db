//! Rendering shared by the native API, batches and the dialects: stored values as raw JSON,
//! an item as the native `data` object, the `{"data": …}` envelope, times as RFC 3339, the
//! consistency header's value.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::HeaderValue;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::error::ApiError;
use crate::model::command::Item;

pub fn rfc3339(ms: u64) -> String {
    // humantime formats only up to the end of year 9999; later expiries are clamped there.
    const LAST_MS: u64 = 253_402_300_799_999;
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.min(LAST_MS))).to_string()
}

/// A stored value as JSON to embed in a response. The state machine holds canonical JSON text
/// (every surface stores what serde_json wrote), so it is borrowed as it is: serde_json only
/// checks it with its non-allocating skip parser, instead of building a `Value` and writing it
/// out again as the handlers did before they had serde types.
pub fn raw(value: &str) -> Result<&RawValue, ApiError> {
    serde_json::from_str(value).map_err(|e| ApiError::internal(format!("a stored value is not JSON: {e}")))
}

/// The native success envelope.
#[derive(Serialize)]
pub struct Data<T> {
    pub data: T,
}

/// An item as the native `data` object: `{key, value?, version, expiresAt}`.
#[derive(Serialize)]
pub struct ItemView<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a RawValue>,
    /// A decimal string, so JavaScript clients keep every digit.
    #[serde(serialize_with = "as_string")]
    version: u64,
    #[serde(rename = "expiresAt")]
    expires_at: Option<String>,
}

impl<'a> ItemView<'a> {
    pub fn new(item: &'a Item, with_value: bool) -> Result<Self, ApiError> {
        Ok(ItemView {
            key: &item.key,
            value: if with_value { Some(raw(&item.value)?) } else { None },
            version: item.version,
            expires_at: item.expires_at.map(rfc3339),
        })
    }
}

fn as_string<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub fn consistency_header(strong: bool) -> HeaderValue {
    HeaderValue::from_static(if strong { "linearizable" } else { "stale" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_render_with_the_stored_json_spliced_in() {
        let item = Item { key: "k\"1".into(), value: r#"{"a":[1,2.5,"x"]}"#.into(), version: 42, expires_at: None };
        let text = serde_json::to_string(&Data { data: ItemView::new(&item, true).unwrap() }).unwrap();
        assert_eq!(text, r#"{"data":{"key":"k\"1","value":{"a":[1,2.5,"x"]},"version":"42","expiresAt":null}}"#);
        let text = serde_json::to_string(&ItemView::new(&item, false).unwrap()).unwrap();
        assert_eq!(text, r#"{"key":"k\"1","version":"42","expiresAt":null}"#);
    }
}

//! `GET /kvdb/{bucket}/` lists keys (with the secret key when the bucket has one).
//!
//! Parameters: `prefix`, `limit` (1–10000, default 10000), `regex` (default `.*`, matched
//! anywhere in the key unless anchored), `values` (`true`/`false`), `format` (`text`, `json`,
//! `jsonl`), else the Accept header (`text/plain`, `application/json`, or wildcards; none means
//! text; anything else is 406). `regex` runs on the `regex` crate, whose matching is linear in
//! the key length (no backtracking), with compiled-size limits so a pattern cannot exhaust
//! memory.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::bucket;
use super::{bad, blocked, error, not_found, BucketKey, Res};
use crate::api::dialects::shared::{has_control, mark_consistency, value_as_text};
use crate::api::error::ApiError;
use crate::api::exec;
use crate::api::forward::Replay;
use crate::api::state::AppState;
use crate::model::command::Item;

const DEFAULT_LIMIT: usize = 10_000;
const MAX_LIMIT: usize = 10_000;
const MAX_REGEX_LEN: usize = 1024;
/// Bound on a compiled pattern (and its lazy DFA cache).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const PAGE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Jsonl,
}

fn not_acceptable(msg: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", msg)
}

/// `format` wins; else the Accept header's most preferred supported type. jsonl is only
/// ever chosen by `?format=jsonl`, as the seed says.
fn negotiate(format: Option<&str>, accept: Option<&str>) -> Res<Format> {
    if let Some(f) = format {
        return match f {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "jsonl" => Ok(Format::Jsonl),
            _ => Err(not_acceptable("format must be text, json or jsonl")),
        };
    }
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Format::Text) };
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").map(|v| v.trim().parse::<f32>().unwrap_or(0.0)))
            .next()
            .unwrap_or(1.0);
        let f = match media.as_str() {
            "text/plain" | "text/*" | "*/*" => Format::Text,
            "application/json" | "application/*" => Format::Json,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, f));
        }
    }
    best.map(|(_, f)| f)
        .ok_or_else(|| not_acceptable("supported formats: text/plain and application/json (jsonl with ?format=jsonl)"))
}

fn compile(pattern: Option<&String>) -> Res<Option<regex::Regex>> {
    let Some(p) = pattern.filter(|p| !p.is_empty() && p.as_str() != ".*") else { return Ok(None) };
    if p.len() > MAX_REGEX_LEN {
        return Err(bad(format!("regex is over {MAX_REGEX_LEN} bytes")));
    }
    regex::RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|e| bad(format!("bad regex: {e}")))
}

struct Listing {
    prefix: String,
    limit: usize,
    regex: Option<regex::Regex>,
    values: bool,
    format: Format,
    strong: bool,
}

fn parse(st: &AppState, q: &HashMap<String, String>, replay: &Replay) -> Res<Listing> {
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    if prefix.len() > super::MAX_KEY_BYTES || has_control(&prefix) {
        return Err(bad("prefix must be at most 128 bytes of text"));
    }
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("limit must be 1 to {MAX_LIMIT}"))),
        },
    };
    let values = match q.get("values").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(_) => return Err(bad("values must be true or false")),
    };
    let accept = replay.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = negotiate(q.get("format").map(String::as_str), accept)?;
    let strong = exec::is_strong(st, q.get("consistency").map(String::as_str))?;
    Ok(Listing { prefix, limit, regex: compile(q.get("regex"))?, values, format, strong })
}

/// The bucket's live keys (names without the bucket prefix) that match, in byte order.
fn collect(st: &AppState, b: &bucket::Bucket, l: &Listing) -> Res<Vec<(String, Item)>> {
    let base = b.data_prefix();
    let scope = format!("{base}{}", l.prefix);
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (items, more) = st.node.scan_local(&b.ns, &scope, after.as_deref(), PAGE)?;
        after = items.last().map(|i| i.key.clone());
        for item in items {
            let name = item.key[base.len()..].to_string();
            if l.regex.as_ref().is_none_or(|r| r.is_match(&name)) {
                out.push((name, item));
                if out.len() == l.limit {
                    return Ok(out);
                }
            }
        }
        if !more {
            return Ok(out);
        }
    }
}

fn json_text(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn render(format: Format, values: bool, keys: &[(String, Item)]) -> Response {
    let (content_type, body) = match (format, values) {
        (Format::Text, false) => ("text/plain; charset=utf-8", keys.iter().map(|(k, _)| format!("{k}\n")).collect()),
        (Format::Text, true) => (
            "text/plain; charset=utf-8",
            keys.iter().map(|(k, i)| format!("{k}={}\n", value_as_text(&i.value).replace('\n', "\\n"))).collect(),
        ),
        (Format::Json, false) => {
            let list: Vec<String> = keys.iter().map(|(k, _)| json_text(k)).collect();
            ("application/json", format!("[{}]", list.join(",")))
        }
        (Format::Json, true) => {
            let list: Vec<String> = keys.iter().map(|(k, i)| format!("[{},{}]", json_text(k), i.value)).collect();
            ("application/json", format!("[{}]", list.join(",")))
        }
        (Format::Jsonl, false) => {
            ("application/x-ndjson", keys.iter().map(|(k, _)| format!("{}\n", json_text(k))).collect::<String>())
        }
        (Format::Jsonl, true) => (
            "application/x-ndjson",
            keys.iter().map(|(k, i)| format!("[{},{}]\n", json_text(k), i.value)).collect::<String>(),
        ),
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /kvdb/{bucket}` or `/kvdb/{bucket}/`.
pub async fn list(
    State(st): State<AppState>,
    key: BucketKey,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let Path(id) = path.map_err(|e| bad(format!("bad bucket id: {}", e.body_text())))?;
        let Query(q) = query.map_err(|e| bad(e.body_text()))?;
        let replay = replay?;
        Ok((id, parse(&st, &q, &replay)?, replay))
    })();
    let (id, listing, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    if let Err(b) = exec::before_read(&st, listing.strong, None, replay).await {
        return blocked(b);
    }
    let found = (|| -> Res<_> {
        let b = bucket::resolve(&st, &id)?.ok_or_else(|| not_found("bucket not found"))?;
        key.may_list(&b)?;
        collect(&st, &b, &listing)
    })();
    let resp = match found {
        Ok(keys) => render(listing.format, listing.values, &keys),
        Err(e) => error(e),
    };
    mark_consistency(resp, listing.strong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_param_wins_then_accept_then_text() {
        assert_eq!(negotiate(Some("jsonl"), Some("application/json")).unwrap(), Format::Jsonl);
        assert_eq!(negotiate(None, None).unwrap(), Format::Text);
        assert_eq!(negotiate(None, Some("application/json")).unwrap(), Format::Json);
        assert_eq!(negotiate(None, Some("text/html,application/xml;q=0.9,*/*;q=0.8")).unwrap(), Format::Text);
        assert_eq!(negotiate(None, Some("text/plain;q=0.5, application/json")).unwrap(), Format::Json);
        assert_eq!(negotiate(None, Some("application/json;q=0, text/*")).unwrap(), Format::Text);
        for bad in [Some("application/x-ndjson"), Some("text/html"), Some("application/json;q=0")] {
            assert_eq!(negotiate(None, bad).unwrap_err().status, StatusCode::NOT_ACCEPTABLE, "{bad:?}");
        }
        assert_eq!(negotiate(Some("xml"), None).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
    }

    #[test]
    fn regexes_are_bounded() {
        assert!(compile(None).unwrap().is_none());
        assert!(compile(Some(&".*".to_string())).unwrap().is_none());
        let r = compile(Some(&"^hits_2018.*".to_string())).unwrap().unwrap();
        assert!(r.is_match("hits_2018_01") && !r.is_match("visits_2018"));
        assert!(compile(Some(&"(".to_string())).is_err());
        assert!(compile(Some(&"a".repeat(2000))).is_err());
        // Huge repetition counts blow the compiled-size limit instead of memory.
        assert!(compile(Some(&"(a{1000}){1000}".to_string())).is_err());
    }
}

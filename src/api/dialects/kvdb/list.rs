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
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;

use super::access::BucketKey;
use super::bucket;
use super::common::{bad, error, not_found, Res, MAX_KEY_BYTES};
use crate::api::code::Code;
use crate::api::dialects::shared::{has_control, mark_consistency, value_as_text};
use crate::api::error::ApiError;
use crate::api::exec;
use crate::api::forward::Replay;
use crate::api::render;
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
    ApiError::new(Code::NotAcceptable, msg)
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
    if prefix.len() > MAX_KEY_BYTES || has_control(&prefix) {
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
        let (items, more) = st.node.scan_local(&b.ns, &scope, after.as_deref(), PAGE, usize::MAX)?;
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

/// One listed key in JSON and JSONL: its name, or `[name, value]` with the stored value as
/// it is (numbers stay numbers, text stays a string).
#[derive(Serialize)]
#[serde(untagged)]
enum Entry<'a> {
    Name(&'a str),
    Pair(&'a str, &'a RawValue),
}

fn entries(values: bool, keys: &[(String, Item)]) -> Res<Vec<Entry<'_>>> {
    keys.iter().map(|(k, i)| Ok(if values { Entry::Pair(k, render::raw(&i.value)?) } else { Entry::Name(k) })).collect()
}

fn to_json(v: &impl Serialize) -> Res<String> {
    serde_json::to_string(v).map_err(|e| ApiError::internal(e.to_string()))
}

fn render(format: Format, values: bool, keys: &[(String, Item)]) -> Res<Response> {
    let (content_type, body) = match (format, values) {
        (Format::Text, false) => ("text/plain; charset=utf-8", keys.iter().map(|(k, _)| format!("{k}\n")).collect()),
        (Format::Text, true) => (
            "text/plain; charset=utf-8",
            keys.iter().map(|(k, i)| format!("{k}={}\n", value_as_text(&i.value).replace('\n', "\\n"))).collect(),
        ),
        (Format::Json, _) => ("application/json", to_json(&entries(values, keys)?)?),
        (Format::Jsonl, _) => {
            let lines =
                entries(values, keys)?.iter().map(|e| to_json(e).map(|line| line + "\n")).collect::<Res<_>>()?;
            ("application/x-ndjson", lines)
        }
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
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
        return b.render(error);
    }
    let found = (|| -> Res<_> {
        let b = bucket::resolve(&st, &id)?.ok_or_else(|| not_found("bucket not found"))?;
        key.may_list(&b)?;
        collect(&st, &b, &listing)
    })();
    let resp = match found {
        Ok(keys) => render(listing.format, listing.values, &keys).unwrap_or_else(error),
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
            assert_eq!(negotiate(None, bad).unwrap_err().code, Code::NotAcceptable, "{bad:?}");
        }
        assert_eq!(negotiate(Some("xml"), None).unwrap_err().code, Code::NotAcceptable);
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

    #[tokio::test]
    async fn json_listings_keep_numbers_and_strings() {
        let item = |v: &str| Item { key: String::new(), value: v.into(), version: 1, expires_at: None };
        let keys = vec![("n".to_string(), item("101")), ("t\"x".to_string(), item("\"a\\nb\""))];
        let body = |resp: Response| async { axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap() };
        assert_eq!(&body(render(Format::Json, true, &keys).unwrap()).await[..], br#"[["n",101],["t\"x","a\nb"]]"#);
        assert_eq!(&body(render(Format::Json, false, &keys).unwrap()).await[..], br#"["n","t\"x"]"#);
        assert_eq!(
            &body(render(Format::Jsonl, true, &keys).unwrap()).await[..],
            b"[\"n\",101]\n[\"t\\\"x\",\"a\\nb\"]\n"
        );
        assert_eq!(&body(render(Format::Text, true, &keys).unwrap()).await[..], b"n=101\nt\"x=a\\nb\n");
    }
}

//! `GET /kvdb/{bucket}/` lists keys (with the secret key when the bucket has one).
//!
//! Parameters: `prefix`, `limit` (1–10000, default 10000), `regex` (default `.*`, matched
//! anywhere in the key unless anchored), `values` (`true`/`false`), `format` (`text`, `json`,
//! `jsonl`), else the Accept header (`text/plain`, `application/json`, or wildcards; none means
//! text; anything else is 406). `regex` runs on the `regex` crate, whose matching is linear in
//! the key length (no backtracking), with compiled-size limits so a pattern cannot exhaust
//! memory.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;

use super::access::BucketKey;
use super::bucket;
use super::common::{bad, error, not_found, Res, MAX_KEY_BYTES};
use crate::api::code::Code;
use crate::api::dialects::shared::{has_control, mark_consistency, query_params, value_as_text, QueryMap};
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
/// Keys read per page of a listing, and at most this many bytes of their values.
const PAGE: usize = 1000;
const PAGE_BYTES: usize = 1 << 20;

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

/// Writes one listed key as its format shows it: `key` or `key=value` lines in text (a
/// value's newlines escaped as `\n`); `"key"` or `["key", value]` in JSON and JSONL, with the
/// stored value as it is (numbers stay numbers, text stays a string).
fn render_entry(out: &mut String, format: Format, values: bool, first: bool, name: &str, item: &Item) -> Res<()> {
    match format {
        Format::Text if values => {
            out.push_str(&format!("{name}={}\n", value_as_text(&item.value).replace('\n', "\\n")))
        }
        Format::Text => out.push_str(&format!("{name}\n")),
        Format::Json | Format::Jsonl => {
            if format == Format::Json && !first {
                out.push(',');
            }
            let json = if values { to_json(&(name, render::raw(&item.value)?))? } else { to_json(&name)? };
            out.push_str(&json);
            if format == Format::Jsonl {
                out.push('\n');
            }
        }
    }
    Ok(())
}

fn to_json(v: &impl Serialize) -> Res<String> {
    serde_json::to_string(v).map_err(|e| ApiError::internal(e.to_string()))
}

/// A listing produced a page at a time, so it is never built whole: up to 10,000 values of
/// up to 16 KB each would otherwise be about 160 MB (several times that once escaped) in
/// memory per request. Each page reads at most [`PAGE`] keys and [`PAGE_BYTES`] of values.
struct Pager {
    st: AppState,
    ns: String,
    /// The bucket's key prefix, cut from every listed name.
    base: String,
    /// `base` followed by the listing's `prefix`.
    scope: String,
    listing: Listing,
    after: Option<String>,
    listed: usize,
    started: bool,
    done: bool,
}

impl Pager {
    fn new(st: &AppState, b: &bucket::Bucket, listing: Listing) -> Pager {
        let base = b.data_prefix();
        let scope = format!("{base}{}", listing.prefix);
        let (st, ns) = (st.clone(), b.ns.clone());
        Pager { st, ns, base, scope, listing, after: None, listed: 0, started: false, done: false }
    }

    /// The next part of the body (never empty), or `None` once the listing is complete.
    fn next_chunk(&mut self) -> Res<Option<String>> {
        let mut out = String::new();
        if !self.started {
            self.started = true;
            if self.listing.format == Format::Json {
                out.push('[');
            }
        }
        while !self.done && out.is_empty() {
            let (items, more) =
                self.st.node.scan_local(&self.ns, &self.scope, self.after.as_deref(), PAGE, PAGE_BYTES)?;
            self.after = items.last().map(|i| i.key.clone());
            self.done = !more;
            for item in &items {
                let name = &item.key[self.base.len()..];
                if self.listing.regex.as_ref().is_none_or(|r| r.is_match(name)) {
                    let l = &self.listing;
                    render_entry(&mut out, l.format, l.values, self.listed == 0, name, item)?;
                    self.listed += 1;
                    if self.listed == l.limit {
                        self.done = true;
                        break;
                    }
                }
            }
            if self.done && self.listing.format == Format::Json {
                out.push(']');
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

/// The response: the first chunk is made before answering, so an error there is still a
/// proper error response; a storage error later can only cut the body short.
fn respond(mut pager: Pager) -> Res<Response> {
    let content_type = match pager.listing.format {
        Format::Text => "text/plain; charset=utf-8",
        Format::Json => "application/json",
        Format::Jsonl => "application/x-ndjson",
    };
    let first = pager.next_chunk()?;
    let rest = futures::stream::unfold(pager, |mut p| async move {
        match p.next_chunk() {
            Ok(Some(chunk)) => Some((Ok(chunk), p)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e.message, "a kvdb listing stopped part-way");
                p.done = true;
                Some((Err(std::io::Error::other(e.message)), p))
            }
        }
    });
    let body = futures::stream::iter(first.map(Ok)).chain(rest);
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(body)).into_response())
}

/// `GET /kvdb/{bucket}` or `/kvdb/{bucket}/`.
#[utoipa::path(get, path = "/kvdb/{bucket}", tag = "buckets", operation_id = "listKeys",
    summary = "List a bucket's keys, optionally with values",
    params(crate::api::dialects::schema::KvBucketPath, crate::api::dialects::schema::KvListQuery),
    responses((status = 200, description = "`key` or `key=value` lines; `[\"key\"]` or `[[\"key\", value]]`; one `\"key\"` or `[\"key\", value]` per line",
        content((String = "text/plain"), (Object = "application/json"), (String = "application/x-ndjson"))),
        (status = 406, description = "neither `format` nor the Accept header names a supported format", body = String, content_type = "text/plain"),
        crate::api::dialects::schema::KvErrors))]
pub async fn list(
    State(st): State<AppState>,
    key: BucketKey,
    path: Result<Path<String>, PathRejection>,
    query: QueryMap,
    replay: Res<Replay>,
) -> Response {
    let parsed = (|| -> Res<_> {
        let Path(id) = path.map_err(|e| bad(format!("bad bucket id: {}", e.body_text())))?;
        let q = query_params(query, &["prefix", "limit", "regex", "values", "format", "consistency"], bad)?;
        let replay = replay?;
        Ok((id, parse(&st, &q, &replay)?, replay))
    })();
    let (id, listing, replay) = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let listing_strong = listing.strong;
    if let Err(b) = exec::before_read(&st, listing.strong, None, replay).await {
        return b.render(error);
    }
    let found = (|| -> Res<_> {
        let b = bucket::resolve(&st, &id)?.ok_or_else(|| not_found("bucket not found"))?;
        key.may_list(&b)?;
        let strong = listing.strong;
        Ok((respond(Pager::new(&st, &b, listing))?, strong))
    })();
    match found {
        Ok((resp, strong)) => mark_consistency(resp, strong),
        Err(e) => mark_consistency(error(e), listing_strong),
    }
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

    #[test]
    fn entries_keep_numbers_and_strings() {
        let item = |v: &str| Item { key: String::new(), value: v.into(), version: 1, expires_at: None };
        let keys = [("n", item("101")), ("t\"x", item("\"a\\nb\""))];
        let body = |format: Format, values: bool| {
            let mut out = String::new();
            for (i, (k, v)) in keys.iter().enumerate() {
                render_entry(&mut out, format, values, i == 0, k, v).unwrap();
            }
            out
        };
        assert_eq!(body(Format::Json, true), r#"["n",101],["t\"x","a\nb"]"#);
        assert_eq!(body(Format::Json, false), r#""n","t\"x""#);
        assert_eq!(body(Format::Jsonl, true), "[\"n\",101]\n[\"t\\\"x\",\"a\\nb\"]\n");
        assert_eq!(body(Format::Text, true), "n=101\nt\"x=a\\nb\n");
    }
}

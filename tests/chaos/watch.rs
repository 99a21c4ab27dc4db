//! The watch workload's clients: batch writers, watchers that follow `GET /kv/watch` and
//! resume on a random member with `Last-Event-ID` whenever their stream ends, and the
//! reference history read after the finale. What they record is judged by `watchcheck.rs`.
//!
//! A watcher also hangs up on its own after a random 1–6 s (6–12 s on the quiet prefix), so resumes happen all through a
//! run, not only when a fault ends a stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::history::{OpKind, Workload};
use super::plan::Rng;
use super::workload::{api, follow, think, unique, Ctx, Recorder};

/// The prefix every key of the watch workload starts with, and the one the watchers follow.
pub const PREFIX: &str = "watch-";
/// Keys the batch writers choose from.
const KEYS: u64 = 4;
/// The one key of the quiet writer, and the prefix of the watcher that follows only it: the
/// busy keys are outside that prefix, so this watcher's stream mostly carries progress events
/// (every 5 s without a change) and resumes from progress ids.
pub const QUIET_PREFIX: &str = "watch-q";
/// The quiet writer's pause between writes, in ms.
const QUIET_MS: (u64, u64) = (3_000, 12_000);
/// Watchers per run and the prefix each follows.
pub const WATCHERS: [&str; 3] = [PREFIX, PREFIX, QUIET_PREFIX];
/// A stream that yields no byte for this long is treated as dropped (a paused or cut-off
/// node). A healthy stream sends a change or, on the quiet prefix, a progress at least every
/// 5 s while writers run (a 4 s limit cut every quiet stream before its first progress).
const IDLE: Duration = Duration::from_secs(8);
/// How long one connection attempt (request to response headers) may take.
const CONNECT: Duration = Duration::from_secs(2);
/// How long a watcher keeps one connection before it hangs up and resumes elsewhere, in ms;
/// longer for the quiet watcher, whose progress events come only after 5 s without a change.
const CONN_MS: (u64, u64) = (1_000, 6_000);
const QUIET_CONN_MS: (u64, u64) = (6_000, 12_000);
/// How soon every watcher returns its log once the stop flag is set: a watcher sees the flag
/// at its next event, or at worst after an idle stream's limit and a connection attempt.
pub const STOP_WITHIN: Duration = Duration::from_secs(IDLE.as_secs() + 2 * CONNECT.as_secs() + 3);
/// Deadline of the reference read after the finale.
pub const REFERENCE_DEADLINE: Duration = Duration::from_secs(30);

/// One change as a watcher (or the reference) saw it; `expiresAt` is left out (no TTLs here).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub op: String,
    pub key: String,
    pub version: u64,
    pub value: Value,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Change,
    Progress,
    Compacted,
    /// `error`, `revoked` or anything else: the stream ends.
    Other,
}

/// One event received, in arrival order, with the connection (index into `conns`) it came on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WatchEvent {
    pub conn: usize,
    pub kind: EventKind,
    pub id: Option<u64>,
    /// `data.index` of a change (must equal `id`).
    pub index: Option<u64>,
    pub changes: Vec<Change>,
}

/// One connection attempt: where, from which point, and how it went.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Conn {
    pub node: String,
    /// `Last-Event-ID` sent (none on a watcher's fresh start).
    pub after: Option<u64>,
    /// `stream`, `http 410`, `http 503`, `transport: …`.
    pub answer: String,
    /// For a 410: `compactedIndex` of its body.
    pub compacted_index: Option<u64>,
    /// Why a stream ended: `eof`, `idle`, `hang-up`, `compacted`, `error`, `stop`.
    pub end: String,
}

impl Conn {
    pub fn streamed(&self) -> bool {
        self.answer == "stream"
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WatcherLog {
    pub watcher: usize,
    pub prefix: String,
    pub conns: Vec<Conn>,
    pub events: Vec<WatchEvent>,
}

/// The reference: every entry with a change under the prefix in `(after, end]`, read from one
/// node after the finale.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Reference {
    pub node: String,
    pub after: u64,
    pub end: u64,
    pub entries: std::collections::BTreeMap<u64, Vec<Change>>,
}

impl Reference {
    /// What a watch on `prefix` (inside the reference's own) sees: each entry's changes under
    /// it, and no entry without one.
    pub fn view(&self, prefix: &str) -> Reference {
        let entries = self
            .entries
            .iter()
            .filter_map(|(i, c)| {
                let c: Vec<Change> = c.iter().filter(|c| c.key.starts_with(prefix)).cloned().collect();
                (!c.is_empty()).then_some((*i, c))
            })
            .collect();
        Reference { node: self.node.clone(), after: self.after, end: self.end, entries }
    }
}

fn parse_changes(data: &Value) -> Vec<Change> {
    data["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| Change {
                    op: c["op"].as_str().unwrap_or("").to_string(),
                    key: c["key"].as_str().unwrap_or("").to_string(),
                    version: c["version"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0),
                    value: c.get("value").cloned().unwrap_or(Value::Null),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn index_of(data: &Value) -> Option<u64> {
    data["index"].as_str()?.parse().ok()
}

/// A batch writer pinned to slot `node`: sets 1–3 distinct keys, each to a unique value, in
/// one `POST /kv/batch` (one entry, so one event carrying them all).
pub async fn writer(ctx: Arc<Ctx>, client: u64, node: usize) -> Vec<super::history::Op> {
    let mut api = api(&ctx, node);
    let mut rng = Rng::new(ctx.plan.seed ^ (client << 32));
    let mut rec = Recorder::new(client, Workload::Watch, ctx.clock);
    let mut seq = 0;
    while !ctx.stopped() {
        follow(&mut api, &ctx, node);
        let n = 1 + rng.below(3);
        let first = rng.below(KEYS);
        let mut ops = Vec::new();
        let mut pairs = Vec::new();
        for i in 0..n {
            seq += 1;
            let key = format!("{PREFIX}{}", (first + i) % KEYS);
            let v = unique(client, seq);
            ops.push(json!({ "op": "set", "key": key, "value": v }));
            pairs.push(json!([key, v]));
        }
        let keys: Vec<&str> = ops.iter().filter_map(|o| o["key"].as_str()).collect();
        let key = keys.join(",");
        let started = rec.begin();
        let reply = api.batch(&Value::Array(ops.clone())).await;
        let ok = rec.finish(&api, started, OpKind::Write, &key, Value::Array(pairs), &reply).is_ok();
        if let Some(op) = rec.ops.last_mut() {
            // Every write of a batch has the entry's index as its version.
            op.extra.version = reply.data["results"][0]["version"].as_str().and_then(|v| v.parse().ok());
        }
        think(&mut rng, 40, ok).await;
    }
    rec.ops
}

/// The quiet writer: one key under `QUIET_PREFIX`, a unique value every few seconds.
pub async fn quiet_writer(ctx: Arc<Ctx>, client: u64) -> Vec<super::history::Op> {
    let node = client as usize % ctx.slot_count();
    let mut api = api(&ctx, node);
    let mut rng = Rng::new(ctx.plan.seed ^ (client << 32));
    let mut rec = Recorder::new(client, Workload::Watch, ctx.clock);
    let mut seq = 0;
    while !ctx.stopped() {
        let pause = Duration::from_millis(QUIET_MS.0 + rng.below(QUIET_MS.1 - QUIET_MS.0));
        let until = Instant::now() + pause;
        while !ctx.stopped() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if ctx.stopped() {
            break;
        }
        follow(&mut api, &ctx, node);
        seq += 1;
        let v = unique(client, seq);
        let ops = json!([{ "op": "set", "key": QUIET_PREFIX, "value": v }]);
        let started = rec.begin();
        let reply = api.batch(&ops).await;
        rec.finish(&api, started, OpKind::Write, QUIET_PREFIX, json!([[QUIET_PREFIX, v]]), &reply);
        if let Some(op) = rec.ops.last_mut() {
            op.extra.version = reply.data["results"][0]["version"].as_str().and_then(|v| v.parse().ok());
        }
    }
    rec.ops
}

/// Spawns the watchers; each returns its log when the run's stop flag is set.
pub fn spawn_watchers(ctx: &Arc<Ctx>, set: &mut tokio::task::JoinSet<WatcherLog>) {
    for (w, prefix) in WATCHERS.into_iter().enumerate() {
        set.spawn(watcher(ctx.clone(), w, prefix));
    }
}

/// An open stream and the bytes of its unfinished event.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

/// The next complete SSE block as (id, event, data), or why none came.
async fn next_block(s: &mut Stream, deadline: Instant) -> Result<(Option<u64>, String, String), &'static str> {
    loop {
        if let Some(end) = s.buf.find("\n\n") {
            let block: String = s.buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if id.is_none() && data.is_empty() {
                continue; // a keep-alive comment
            }
            return Ok((id, event, data));
        }
        let wait = deadline.min(Instant::now() + IDLE).saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, s.resp.chunk()).await {
            Err(_) if Instant::now() >= deadline => return Err("hang-up"),
            Err(_) => return Err("idle"),
            Ok(Ok(Some(bytes))) => s.buf.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Ok(None)) => return Err("eof"),
            Ok(Err(_)) => return Err("error"),
        }
    }
}

/// One watcher: connects to a random member, records every event, and on any end resumes on
/// a random member with `Last-Event-ID` = the last id it received (change or progress).
async fn watcher(ctx: Arc<Ctx>, w: usize, prefix: &'static str) -> WatcherLog {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .no_proxy()
        .build()
        .expect("build reqwest client");
    let mut rng = Rng::new(ctx.plan.seed ^ 0x57A7_C400 ^ ((w as u64) << 40));
    let mut log = WatcherLog { watcher: w, prefix: prefix.to_string(), ..WatcherLog::default() };
    let mut last: Option<u64> = None;
    while !ctx.stopped() {
        let node = ctx.slot_url(rng.below(ctx.slot_count() as u64) as usize);
        // The stream's own reads are bounded by `IDLE` and the hang-up time, its start by `CONNECT`.
        let mut req = http.get(format!("{node}/kv/watch?prefix={prefix}")).header("accept", "text/event-stream");
        // Recorded as sent, so "resumable" judges the header itself.
        let after = last;
        if let Some(id) = after {
            req = req.header("last-event-id", id.to_string());
        }
        let conn = log.conns.len();
        let mut c = Conn { node, after, answer: String::new(), compacted_index: None, end: String::new() };
        let resp = match tokio::time::timeout(CONNECT, req.send()).await {
            Err(_) => Err("transport: no answer in time".to_string()),
            Ok(Err(e)) => Err(format!("transport: {e}")),
            Ok(Ok(r)) => Ok(r),
        };
        let resp = match resp {
            Ok(r) if r.status().as_u16() == 200 => r,
            Ok(r) => {
                c.answer = format!("http {}", r.status().as_u16());
                let body: Value =
                    tokio::time::timeout(CONNECT, r.json()).await.ok().and_then(Result::ok).unwrap_or(Value::Null);
                c.compacted_index = body["error"]["compactedIndex"].as_str().and_then(|v| v.parse().ok());
                log.conns.push(c);
                tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
                continue;
            }
            Err(e) => {
                c.answer = e;
                log.conns.push(c);
                tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
                continue;
            }
        };
        c.answer = "stream".into();
        log.conns.push(c);
        let mut s = Stream { resp, buf: String::new() };
        let (lo, hi) = if prefix == QUIET_PREFIX { QUIET_CONN_MS } else { CONN_MS };
        let hang_up = Instant::now() + Duration::from_millis(lo + rng.below(hi - lo));
        let end = loop {
            if ctx.stopped() {
                break "stop".to_string();
            }
            let (id, event, data) = match next_block(&mut s, hang_up).await {
                Ok(b) => b,
                Err(why) => break why.to_string(),
            };
            let data: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            let kind = match event.as_str() {
                "change" => EventKind::Change,
                "progress" => EventKind::Progress,
                "compacted" => EventKind::Compacted,
                _ => EventKind::Other,
            };
            let changes = if kind == EventKind::Change { parse_changes(&data) } else { Vec::new() };
            log.events.push(WatchEvent { conn, kind, id, index: index_of(&data), changes });
            if id.is_some() && matches!(kind, EventKind::Change | EventKind::Progress) {
                last = id;
            }
            match kind {
                EventKind::Compacted => break "compacted".to_string(),
                EventKind::Other => break format!("event {event}"),
                _ => {}
            }
        };
        log.conns[conn].end = end;
    }
    log
}

/// Reads the reference history under the prefix from `after` on: long polls (`wait=1s`),
/// paging with `index`, until a poll past `end` comes back empty. Tries the nodes in turn; a
/// node that answers 410 (it installed a snapshot and keeps no history below it) or fails is
/// left for the next one.
pub async fn reference(urls: &[String], after: u64, end: u64) -> Result<Reference, String> {
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + REFERENCE_DEADLINE;
    let mut tried = Vec::new();
    for node in urls.iter().cycle() {
        if Instant::now() >= deadline {
            return Err(format!("no node served the history after {after} by the deadline: {}", tried.join("; ")));
        }
        let mut r = Reference { node: node.clone(), after, end: after, entries: Default::default() };
        let outcome: Result<(), String> = async {
            loop {
                if Instant::now() >= deadline {
                    return Err("deadline".into());
                }
                let url = format!("{node}/kv/watch?prefix={PREFIX}&after={}&wait=1s", r.end);
                let resp =
                    http.get(url).header("accept", "application/json").send().await.map_err(|e| e.to_string())?;
                let code = resp.status().as_u16();
                let body: Value = resp.json().await.map_err(|e| e.to_string())?;
                if code != 200 {
                    return Err(format!("HTTP {code} {}", body["error"]));
                }
                let events = body["events"].as_array().cloned().unwrap_or_default();
                for e in &events {
                    let i = index_of(e).ok_or("an event without an index")?;
                    r.entries.insert(i, parse_changes(e));
                }
                let next = index_of(&body).ok_or("an answer without an index")?;
                r.end = r.end.max(next);
                if events.is_empty() && r.end >= end {
                    return Ok(());
                }
            }
        }
        .await;
        match outcome {
            Ok(()) => return Ok(r),
            Err(e) => {
                tried.push(format!("{node}: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Err("no nodes".into())
}

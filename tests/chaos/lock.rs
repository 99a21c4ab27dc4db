//! The lock workload: `LOCK_CLIENTS` clients contend for one lock (`LOCK_NAME`) while the
//! nemesis kills, pauses and partitions. What they record is judged by `lockcheck.rs`.
//!
//! Each client, pinned to a slot, loops: grant a lease (TTL 2–3 s) and keep it alive from a
//! task of its own (a keepalive every TTL/3, until told to stop or the lease is gone), take the
//! lock with `wait` 3 s (retrying with the same lease after a 503, 504 or a wait that ran out),
//! then, while holding, make 1–6 fenced writes of `{"token", "seq", "client"}` to `LOCK_KEY`,
//! and leave in one of three ways:
//! - release the lock and revoke the lease (6 cycles in 10);
//! - abandon it (1 in 10): stop the keepalives and walk away, so the lease expires and the next waiter
//!   holds only after the expiry sweep;
//! - a stale holder (3 in 10): stop the keepalives, sleep 1.5–3.5 s past the TTL (a holder paused
//!   by SIGSTOP or a GC, client side), then make one more fenced write, marked `stale_holder`
//!   (retried, up to 12 times 0.4–0.6 s apart, while it meets a 503 or a dead node), which must be refused once a higher token
//!   holds the lock; then release.
//!
//! A fenced write that is refused (409 `fenced`) ends the holding at once: the client lost
//! the lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::client::{Api, Reply};
use super::history::{Op, OpKind, Status, Workload};
use super::plan::Rng;
use super::workload::{follow, think, Ctx, Recorder};

pub const LOCK_NAME: &str = "chaos-lock";
/// The key every holder writes with `ifFence`.
pub const LOCK_KEY: &str = "lock-log";
/// Contending clients, ids `LOCK_CLIENT_BASE..`, on slots 0, 1, 2 (mod the cluster size).
pub const LOCK_CLIENTS: u64 = 3;
pub const LOCK_CLIENT_BASE: u64 = 700;
/// How long one lock request may wait in the queue.
const WAIT_MS: u64 = 3_000;
/// Attempts of a stale holder's write that found no leader or no node, 400–600 ms apart, so
/// they outlast a kill or a partition of its node (holds of up to 6 s).
const STALE_TRIES: u32 = 12;

/// The `wait`-long lock requests need a longer client timeout than the plan's.
fn wait_api(ctx: &Ctx, node: usize) -> Api {
    Api::new(&ctx.slot_url(node), Duration::from_millis(ctx.plan.op_timeout_ms + WAIT_MS))
}

fn token_of(reply: &Reply) -> Option<u64> {
    reply.data.get("token")?.as_str()?.parse().ok()
}

/// Keeps `lease` alive every `every` until `stop` is set or the lease is gone (404); records
/// each keepalive under the holder's client id.
async fn keepalive(
    ctx: Arc<Ctx>,
    client: u64,
    node: usize,
    lease: String,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Op> {
    let mut api = super::workload::api(&ctx, node);
    let mut rec = Recorder::new(client, Workload::Lock, ctx.clock);
    let key = format!("leases/{lease}");
    loop {
        let until = tokio::time::Instant::now() + every;
        while tokio::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) || ctx.stopped() {
                return rec.ops;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        follow(&mut api, &ctx, node);
        let started = rec.begin();
        let reply = api.post(&format!("/leases/{lease}/keepalive"), &json!({})).await;
        rec.finish(&api, started, OpKind::Keepalive, &key, json!(lease), &reply);
        if reply.http == Some(404) {
            return rec.ops;
        }
    }
}

/// One contending client.
pub async fn client(ctx: Arc<Ctx>, client: u64, node: usize) -> Vec<Op> {
    let mut api = super::workload::api(&ctx, node);
    let mut wapi = wait_api(&ctx, node);
    let mut rng = Rng::new(ctx.plan.seed ^ (client << 32));
    let mut rec = Recorder::new(client, Workload::Lock, ctx.clock);
    let mut keepers: Vec<tokio::task::JoinHandle<Vec<Op>>> = Vec::new();
    let mut seq = 0u64;
    while !ctx.stopped() {
        follow(&mut api, &ctx, node);
        let ttl_s = 2 + rng.below(2);
        let started = rec.begin();
        let reply = api.post("/leases", &json!({ "ttlSeconds": ttl_s })).await;
        let lease = reply.data.get("id").and_then(Value::as_str).map(str::to_string);
        rec.finish(&api, started, OpKind::Grant, "leases", json!(ttl_s), &reply);
        let Some(lease) = lease.filter(|_| reply.status == Status::Ok) else {
            think(&mut rng, 200, false).await;
            continue;
        };
        if let Some(op) = rec.ops.last_mut() {
            op.rec.res = json!(lease);
        }
        let stop_keepalive = Arc::new(AtomicBool::new(false));
        keepers.push(tokio::spawn(keepalive(
            ctx.clone(),
            client,
            node,
            lease.clone(),
            Duration::from_millis(ttl_s * 1_000 / 3),
            stop_keepalive.clone(),
        )));

        // Take the lock, retrying with the same lease (idempotent: same place, same token).
        let mut token = None;
        let mut attempts = 0;
        while token.is_none() && !ctx.stopped() && attempts < 6 {
            attempts += 1;
            follow(&mut wapi, &ctx, node);
            let started = rec.begin();
            let body = json!({ "lease": lease, "wait": format!("{WAIT_MS}ms") });
            let reply = wapi.post(&format!("/locks/{LOCK_NAME}"), &body).await;
            rec.finish(&wapi, started, OpKind::Acquire, LOCK_NAME, json!(lease), &reply);
            if reply.status == Status::Ok {
                token = token_of(&reply);
                if let Some(op) = rec.ops.last_mut() {
                    op.rec.res = token.map(|t| json!(t)).unwrap_or(Value::Null);
                    op.extra.token = token;
                }
            } else if reply.http == Some(404) {
                break; // The lease is gone.
            } else if reply.http != Some(409) {
                think(&mut rng, 100, false).await;
            }
        }
        let Some(token) = token else {
            stop_keepalive.store(true, Ordering::Relaxed);
            let started = rec.begin();
            let reply = api.delete(&format!("/leases/{lease}")).await;
            rec.finish(&api, started, OpKind::Revoke, &format!("leases/{lease}"), json!(lease), &reply);
            continue;
        };

        // Holding: fenced writes.
        let mut lost = false;
        for _ in 0..1 + rng.below(6) {
            if ctx.stopped() {
                break;
            }
            seq += 1;
            let reply = fenced_write(&ctx, &mut api, &mut rec, node, token, seq, false).await;
            if reply.http == Some(409) {
                lost = true;
                break;
            }
            think(&mut rng, 300, reply.status == Status::Ok).await;
        }

        // Leave: release (most cycles), abandon, or play a holder paused past its lease.
        let how = rng.below(10);
        stop_keepalive.store(true, Ordering::Relaxed);
        if how == 0 && !lost {
            // Abandoned: the lease runs out on its own.
        } else {
            if how <= 3 && !lost {
                // Paused past the lease (cut short when the run stops, without the write).
                let pause = Duration::from_millis(ttl_s * 1_000 + 1_500 + rng.below(2_000));
                let until = tokio::time::Instant::now() + pause;
                while !ctx.stopped() && tokio::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // Until a definite answer (200 or 409): a 503 or a dead node says nothing
                // about fencing.
                for _ in 0..STALE_TRIES {
                    if ctx.stopped() {
                        break;
                    }
                    seq += 1;
                    let reply = fenced_write(&ctx, &mut api, &mut rec, node, token, seq, true).await;
                    if matches!(reply.http, Some(200 | 409)) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(400 + rng.below(200))).await;
                }
            }
            follow(&mut api, &ctx, node);
            let started = rec.begin();
            let reply = api.delete(&format!("/locks/{LOCK_NAME}/{token}")).await;
            rec.finish(&api, started, OpKind::Release, LOCK_NAME, json!(token), &reply);
            if let Some(op) = rec.ops.last_mut() {
                op.extra.token = Some(token);
            }
            let started = rec.begin();
            let reply = api.delete(&format!("/leases/{lease}")).await;
            rec.finish(&api, started, OpKind::Revoke, &format!("leases/{lease}"), json!(lease), &reply);
        }
        think(&mut rng, 300, true).await;
    }
    for k in keepers {
        if let Ok(ops) = k.await {
            rec.ops.extend(ops);
        }
    }
    rec.ops
}

/// `PUT LOCK_KEY` with `ifFence` for `token`; recorded as a write with the token.
async fn fenced_write(
    ctx: &Ctx,
    api: &mut Api,
    rec: &mut Recorder,
    node: usize,
    token: u64,
    seq: u64,
    stale_holder: bool,
) -> Reply {
    follow(api, ctx, node);
    let value = json!({ "token": token, "seq": seq, "client": rec.client });
    let body = json!({ "value": value, "ifFence": { "lock": LOCK_NAME, "token": token.to_string() } });
    let started = rec.begin();
    let reply = api.put(LOCK_KEY, &body, super::client::Kind::Write).await;
    rec.finish(api, started, OpKind::Write, LOCK_KEY, value, &reply);
    if let Some(op) = rec.ops.last_mut() {
        op.extra.token = Some(token);
        op.extra.stale_holder = stale_holder;
    }
    reply
}

/// Spawns the contending clients.
pub fn spawn(ctx: &Arc<Ctx>, set: &mut tokio::task::JoinSet<Vec<Op>>) {
    let n = ctx.slot_count() as u64;
    for i in 0..LOCK_CLIENTS {
        set.spawn(client(ctx.clone(), LOCK_CLIENT_BASE + i, (i % n) as usize));
    }
}

/// The lock workload's figures for the run summary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct LockStats {
    pub leases: usize,
    pub acquisitions: usize,
    /// Distinct tokens that held the lock (an acquisition retried after an unknown outcome
    /// returns the same token).
    pub holders: usize,
    pub writes_ok: usize,
    /// Refused with 409 `fenced`.
    pub writes_fenced: usize,
    pub writes_unknown: usize,
    /// Failed otherwise (503, connection refused, …).
    pub writes_failed: usize,
    pub stale_attempts: usize,
    pub stale_refused: usize,
    /// Stale attempts made after a higher token was seen holding (the ones the check judges).
    pub stale_judged: usize,
    pub keepalives_lost: usize,
}

pub fn is_fenced(op: &Op) -> bool {
    op.extra.error.as_deref().is_some_and(|e| e.starts_with("HTTP 409") && e.contains("fenced"))
}

pub fn stats(ops: &[Op]) -> LockStats {
    let mut s = LockStats::default();
    let mut tokens = std::collections::BTreeSet::new();
    let judged = super::lockcheck::stale_judged(ops);
    for op in ops.iter().filter(|o| o.workload == Workload::Lock) {
        match op.rec.op {
            OpKind::Grant if op.is_ok() => s.leases += 1,
            OpKind::Keepalive
                if op.rec.status != Status::Ok && op.extra.error.as_deref().unwrap_or("").starts_with("HTTP 404") =>
            {
                s.keepalives_lost += 1
            }
            OpKind::Acquire if op.is_ok() => {
                s.acquisitions += 1;
                tokens.extend(op.extra.token);
            }
            OpKind::Write if op.extra.token.is_some() => {
                match op.rec.status {
                    Status::Ok => s.writes_ok += 1,
                    Status::Info => s.writes_unknown += 1,
                    Status::Fail if is_fenced(op) => s.writes_fenced += 1,
                    Status::Fail => s.writes_failed += 1,
                }
                if op.extra.stale_holder {
                    s.stale_attempts += 1;
                    if is_fenced(op) {
                        s.stale_refused += 1;
                    }
                }
            }
            _ => {}
        }
    }
    s.holders = tokens.len();
    s.stale_judged = judged;
    s
}

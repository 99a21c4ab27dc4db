//! The client workers. Each is pinned to one slot and records every operation it issues. A
//! slot names one member; when a membership step removes that member, the slot is moved to
//! the node that joined in its place, so every client keeps working through a member.
//!
//! - register (lin-kv): strong reads, writes and CASes of small integers, many clients per
//!   key; keys rotate every `ops_per_key` operations so each key's history stays checkable.
//! - counter: increments by 1 and strong reads, one key per `ops_per_key` operations.
//! - ttl: one writer per key writes unique values, all with the plan's TTL, and pauses so the
//!   key sometimes expires; a strong reader per node watches every key.
//! - stale: one writer per key writes increasing unique values; a reader per node reads every
//!   key with the node's default consistency (stale on followers).
//! - lock: clients contending for one lock and making fenced writes (`lock.rs`).
//! - watch: batch writers (`watch.rs`) set 1–3 keys under `watch-` with unique values in one
//!   entry; the watchers beside them are in `watch.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{json, Value};

use super::client::{Api, Kind, Reply};
use super::history::{parse_expires_at_ms, wall_ms, Clock, Extra, Op, OpKind, Record, Status, Workload};
use super::plan::{Plan, Rng};

/// Keys used at once by the register workload.
const REGISTER_KEYS: u64 = 2;
pub const TTL_KEYS: u64 = 2;
pub const STALE_KEYS: u64 = 3;
/// Client ids: a block per role, so a history line says which role issued it.
pub const FINAL_READER: u64 = 900;

pub struct Ctx {
    pub clock: Clock,
    pub stop: Arc<AtomicBool>,
    pub plan: Arc<Plan>,
    /// The node each slot's clients talk to (a URL), one slot per member. A std lock: it is
    /// held only to copy or replace a string, never across an await.
    slots: Vec<RwLock<String>>,
    register_ops: AtomicU64,
    counter_ops: AtomicU64,
}

impl Ctx {
    pub fn new(clock: Clock, plan: Arc<Plan>, urls: Vec<String>) -> Arc<Ctx> {
        Arc::new(Ctx {
            clock,
            stop: Arc::new(AtomicBool::new(false)),
            plan,
            slots: urls.into_iter().map(RwLock::new).collect(),
            register_ops: AtomicU64::new(0),
            counter_ops: AtomicU64::new(0),
        })
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The node slot `i` names now.
    pub fn slot_url(&self, i: usize) -> String {
        self.slots[i].read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Moves every slot naming `from` to `to`; returns how many moved. Operations already sent
    /// to `from` finish (and are recorded) as they would have.
    pub fn move_slots(&self, from: &str, to: &str) -> usize {
        let mut moved = 0;
        for slot in &self.slots {
            let mut url = slot.write().unwrap_or_else(|e| e.into_inner());
            if *url == from {
                *url = to.to_string();
                moved += 1;
            }
        }
        moved
    }
}

/// Records one client's operations.
pub struct Recorder {
    pub client: u64,
    workload: Workload,
    clock: Clock,
    pub ops: Vec<Op>,
}

pub struct Started {
    ns: u64,
    wall: u64,
}

impl Recorder {
    pub fn new(client: u64, workload: Workload, clock: Clock) -> Recorder {
        Recorder { client, workload, clock, ops: Vec::new() }
    }

    pub fn begin(&self) -> Started {
        Started { ns: self.clock.now_ns(), wall: wall_ms() }
    }

    /// Records an operation that `reply` answered; `res` is what goes into the history.
    pub fn finish(&mut self, api: &Api, started: Started, op: OpKind, key: &str, arg: Value, reply: &Reply) -> &Op {
        let res = if reply.status != Status::Ok {
            Value::Null
        } else {
            match op {
                OpKind::Read | OpKind::Incr => reply.value(),
                OpKind::Write => Value::Null,
                OpKind::Cas => Value::Bool(reply.http == Some(200)),
                // The lock workload's lease and lock calls set `res` themselves (`lock.rs`).
                _ => Value::Null,
            }
        };
        let extra = Extra {
            consistency: reply.consistency.clone(),
            served_by: reply.served_by,
            version: reply.version(),
            expires_at_ms: reply.data.get("expiresAt").and_then(Value::as_str).and_then(parse_expires_at_ms),
            call_wall_ms: started.wall,
            ret_wall_ms: wall_ms(),
            error: reply.error.clone(),
            token: None,
            stale_holder: false,
        };
        self.ops.push(Op {
            workload: self.workload,
            rec: Record {
                client: self.client,
                node: api.base.clone(),
                op,
                key: key.to_string(),
                arg,
                status: reply.status,
                res,
                call: started.ns,
                ret: self.clock.now_ns(),
            },
            extra,
        });
        self.ops.last().expect("just pushed")
    }
}

/// Pause between operations; longer after one that did not succeed, so a client facing a
/// dead or cut-off node does not flood the history with refusals.
pub async fn think(rng: &mut Rng, max_ms: u64, ok: bool) {
    let backoff = if ok { 0 } else { 100 + rng.below(100) };
    tokio::time::sleep(Duration::from_millis(backoff + rng.below(max_ms + 1))).await;
}

pub fn api(ctx: &Ctx, node: usize) -> Api {
    Api::new(&ctx.slot_url(node), Duration::from_millis(ctx.plan.op_timeout_ms))
}

/// The client for slot `node` before each operation: a new one (own connection pool) once the
/// slot was moved to another node.
pub fn follow(api: &mut Api, ctx: &Ctx, node: usize) {
    if api.base != ctx.slot_url(node) {
        *api = self::api(ctx, node);
    }
}

pub async fn register_client(ctx: Arc<Ctx>, client: u64, node: usize) -> Vec<Op> {
    let mut api = api(&ctx, node);
    let mut rng = Rng::new(ctx.plan.seed ^ (client << 32));
    let mut rec = Recorder::new(client, Workload::Register, ctx.clock);
    while !ctx.stopped() {
        follow(&mut api, &ctx, node);
        let n = ctx.register_ops.fetch_add(1, Ordering::Relaxed);
        let key = format!("reg-{}-{}", n / (ctx.plan.ops_per_key * REGISTER_KEYS), rng.below(REGISTER_KEYS));
        let started = rec.begin();
        let ok = match rng.below(4) {
            0 | 1 => {
                let reply = api.read(&key, true).await;
                rec.finish(&api, started, OpKind::Read, &key, Value::Null, &reply).is_ok()
            }
            2 => {
                let v = rng.below(5) as i64;
                let reply = api.put(&key, &json!({ "value": v }), Kind::Write).await;
                rec.finish(&api, started, OpKind::Write, &key, json!(v), &reply).is_ok()
            }
            _ => {
                let (old, new) = (rng.below(5) as i64, rng.below(5) as i64);
                let reply = api.put(&key, &json!({ "value": new, "ifValue": old }), Kind::Cas).await;
                rec.finish(&api, started, OpKind::Cas, &key, json!([old, new]), &reply).is_ok()
            }
        };
        think(&mut rng, 20, ok).await;
    }
    rec.ops
}

pub async fn counter_client(ctx: Arc<Ctx>, client: u64, node: usize) -> Vec<Op> {
    let mut api = api(&ctx, node);
    let mut rng = Rng::new(ctx.plan.seed ^ (client << 32));
    let mut rec = Recorder::new(client, Workload::Counter, ctx.clock);
    while !ctx.stopped() {
        follow(&mut api, &ctx, node);
        let n = ctx.counter_ops.fetch_add(1, Ordering::Relaxed);
        let key = format!("ctr-{}", n / ctx.plan.ops_per_key);
        let started = rec.begin();
        let ok = if rng.below(4) == 0 {
            let reply = api.read(&key, true).await;
            rec.finish(&api, started, OpKind::Read, &key, Value::Null, &reply).is_ok()
        } else {
            let reply = api.incr(&key, 1).await;
            rec.finish(&api, started, OpKind::Incr, &key, json!(1), &reply).is_ok()
        };
        think(&mut rng, 20, ok).await;
    }
    rec.ops
}

/// Unique value of a single-writer workload: the writer's id in the high bits.
pub fn unique(client: u64, seq: u64) -> i64 {
    ((client << 24) | seq) as i64
}

pub async fn ttl_writer(ctx: Arc<Ctx>, client: u64, key_index: u64) -> Vec<Op> {
    let node = key_index as usize % ctx.slot_count();
    let mut api = api(&ctx, node);
    let mut rng = Rng::new(ctx.plan.seed ^ (client << 32));
    let mut rec = Recorder::new(client, Workload::Ttl, ctx.clock);
    let key = format!("ttl-{key_index}");
    let mut seq = 0;
    while !ctx.stopped() {
        follow(&mut api, &ctx, node);
        seq += 1;
        let v = unique(client, seq);
        let started = rec.begin();
        let body = json!({ "value": v, "ttlSeconds": ctx.plan.ttl_s });
        let reply = api.put(&key, &body, Kind::Write).await;
        let ok = rec.finish(&api, started, OpKind::Write, &key, json!(v), &reply).is_ok();
        // Sometimes rewrite before expiry, sometimes let the key expire and stay gone a while.
        think(&mut rng, ctx.plan.ttl_s * 1000 + 2500, ok).await;
    }
    rec.ops
}

/// Strong reads (`strong`) for the ttl workload, default-consistency reads for stale.
pub async fn reader(ctx: Arc<Ctx>, client: u64, node: usize, workload: Workload) -> Vec<Op> {
    let mut api = api(&ctx, node);
    let mut rng = Rng::new(ctx.plan.seed ^ (client << 32));
    let mut rec = Recorder::new(client, workload, ctx.clock);
    let (prefix, keys, strong) = match workload {
        Workload::Ttl => ("ttl", TTL_KEYS, true),
        _ => ("stale", STALE_KEYS, false),
    };
    let mut i = 0;
    while !ctx.stopped() {
        follow(&mut api, &ctx, node);
        let key = format!("{prefix}-{}", i % keys);
        i += 1;
        let started = rec.begin();
        let reply = api.read(&key, strong).await;
        let ok = rec.finish(&api, started, OpKind::Read, &key, Value::Null, &reply).is_ok();
        think(&mut rng, 30, ok).await;
    }
    rec.ops
}

pub async fn stale_writer(ctx: Arc<Ctx>, client: u64, key_index: u64) -> Vec<Op> {
    let node = key_index as usize % ctx.slot_count();
    let mut api = api(&ctx, node);
    let mut rng = Rng::new(ctx.plan.seed ^ (client << 32));
    let mut rec = Recorder::new(client, Workload::Stale, ctx.clock);
    let key = format!("stale-{key_index}");
    let mut seq = 0;
    while !ctx.stopped() {
        follow(&mut api, &ctx, node);
        seq += 1;
        let v = unique(client, seq);
        let started = rec.begin();
        let reply = api.put(&key, &json!({ "value": v }), Kind::Write).await;
        let ok = rec.finish(&api, started, OpKind::Write, &key, json!(v), &reply).is_ok();
        think(&mut rng, 40, ok).await;
    }
    rec.ops
}

/// Spawns every client of the plan's workloads; each task returns its operations.
pub fn spawn_all(ctx: &Arc<Ctx>, set: &mut tokio::task::JoinSet<Vec<Op>>) {
    let n = ctx.slot_count();
    for w in ctx.plan.workloads.clone() {
        match w {
            Workload::Register => {
                for i in 0..(ctx.plan.register_clients_per_node * n) {
                    set.spawn(register_client(ctx.clone(), i as u64, i % n));
                }
            }
            Workload::Counter => {
                for i in 0..n {
                    set.spawn(counter_client(ctx.clone(), 100 + i as u64, i));
                }
            }
            Workload::Ttl => {
                for k in 0..TTL_KEYS {
                    set.spawn(ttl_writer(ctx.clone(), 200 + k, k));
                }
                for i in 0..n {
                    set.spawn(reader(ctx.clone(), 300 + i as u64, i, Workload::Ttl));
                }
            }
            Workload::Stale => {
                for k in 0..STALE_KEYS {
                    set.spawn(stale_writer(ctx.clone(), 400 + k, k));
                }
                for i in 0..n {
                    set.spawn(reader(ctx.clone(), 500 + i as u64, i, Workload::Stale));
                }
            }
            // The watchers run in their own set (`watch::spawn_watchers`): they record events,
            // not operations.
            Workload::Watch => {
                for i in 0..n {
                    set.spawn(super::watch::writer(ctx.clone(), 600 + i as u64, i));
                }
                set.spawn(super::watch::quiet_writer(ctx.clone(), 610));
            }
            Workload::Lock => super::lock::spawn(ctx, set),
        }
    }
}

//! Determinism and semantics of apply, checked with proptest: random command logs (two
//! namespaces, a tiny key quota, atomic batches, TTLs, expiry, tokens that expire) are applied
//! to two replicas that split the log into different apply batches (as replicas with different
//! timing do), and to a plain in-memory model. Responses and final state must all agree.
//! `apply` never reads a clock, so the replicas' own wall clocks cannot matter; time enters
//! only through the leader's stamp in each proposal, which the generator varies. Leases are in
//! the logs too: grants, keepalives, revokes, keys attached to them, their expiry, and the
//! renewal a new term gives every lease.

use std::collections::BTreeMap;

use openraft::{CommittedLeaderId, EntryPayload};
use proptest::prelude::*;

use super::apply::{add, Applier};
use crate::model::command::{
    CmdResult, Command, Condition, Item, Lease, Limits, Number, Proposal, Queue, Refusal, TokenExpiry,
};
use crate::model::types::{Entry, LogId};

const KEYS: &[&str] = &["a", "b", "c"];
const TOKEN_IDS: &[&str] = &["t1", "t2"];
const NAMESPACES: &[&str] = &["default", "team"];
/// Small enough that random logs hit the namespace key quota.
const MAX_KEYS: u64 = 2;
/// Lease ids the generated commands name: the first few a log grants, and some never granted.
const LEASE_IDS: std::ops::Range<u64> = 1..5;
/// Lock and election names.
const QUEUE_NAMES: &[&str] = &["m", "n"];

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3i64..3).prop_map(|i| i.to_string()),
        Just(i64::MAX.to_string()),
        Just("1.5".to_string()),
        Just("\"s\"".to_string()),
        Just("{\"x\":1,\"y\":[1,2]}".to_string()),
    ]
}

fn arb_cond() -> impl Strategy<Value = Condition> {
    prop_oneof![
        3 => Just(Condition::None),
        1 => Just(Condition::IfAbsent),
        1 => (0u64..12).prop_map(Condition::IfVersion),
        1 => arb_value().prop_map(Condition::IfValue),
        1 => (proptest::sample::select(QUEUE_NAMES), 1u64..40).prop_map(|(lock, token)| Condition::IfFence { lock: lock.into(), token }),
    ]
}

fn arb_key_cmd() -> impl Strategy<Value = Command> {
    let key = proptest::sample::select(KEYS).prop_map(str::to_string);
    let ns = proptest::sample::select(NAMESPACES).prop_map(str::to_string);
    let ttl = proptest::option::of(1u64..40);
    let delta = prop_oneof![(-2i64..3).prop_map(Number::Int), Just(Number::Int(i64::MAX)), Just(Number::Float(0.5))];
    prop_oneof![
        4 => (ns.clone(), key.clone(), arb_value(), ttl.clone(), arb_cond())
            .prop_map(|(ns, key, value, ttl_ms, cond)| Command::Set { ns, key, value, ttl_ms, cond }),
        2 => (ns.clone(), key.clone(), arb_cond()).prop_map(|(ns, key, cond)| Command::Delete { ns, key, cond }),
        3 => (ns.clone(), key.clone(), delta.clone(), ttl.clone())
            .prop_map(|(ns, key, delta, ttl_ms)| Command::Increment { ns, key, delta, ttl_ms }),
        1 => (ns.clone(), key.clone(), delta, ttl, proptest::sample::select(QUEUE_NAMES), 1u64..40).prop_map(
            |(ns, key, delta, ttl_ms, lock, token)| Command::IncrementFenced {
                ns,
                key,
                delta,
                ttl_ms,
                cond: Condition::IfFence { lock: lock.into(), token },
            }
        ),
        1 => (ns.clone(), key.clone()).prop_map(|(ns, key)| Command::Get { ns, key }),
        2 => (ns, key, arb_value(), proptest::option::of(1u64..40), arb_cond(), LEASE_IDS)
            .prop_map(|(ns, key, value, ttl_ms, cond, lease)| Command::SetLeased { ns, key, value, ttl_ms, cond, lease }),
    ]
}

/// Lock and election commands; tokens are log indices, which the short logs keep below 40.
fn arb_queue_cmd() -> impl Strategy<Value = Command> {
    let ns = proptest::sample::select(NAMESPACES).prop_map(str::to_string);
    let name = proptest::sample::select(QUEUE_NAMES).prop_map(str::to_string);
    let queue = prop_oneof![Just(Queue::Lock), Just(Queue::Election)];
    prop_oneof![
        3 => (ns.clone(), queue.clone(), name.clone(), LEASE_IDS, arb_value(), prop_oneof![Just(0u64), Just(30u64)])
            .prop_map(|(ns, queue, name, lease, value, lock_delay_ms)| Command::Enqueue { ns, queue, name, lease, value, lock_delay_ms }),
        2 => (ns.clone(), queue, name.clone(), 1u64..40).prop_map(|(ns, queue, name, token)| Command::Dequeue { ns, queue, name, token }),
        1 => (ns, name, 1u64..40, arb_value()).prop_map(|(ns, name, token, value)| Command::Proclaim { ns, name, token, value }),
    ]
}

fn arb_lease_cmd() -> impl Strategy<Value = Command> {
    let ns = proptest::sample::select(NAMESPACES).prop_map(str::to_string);
    prop_oneof![
        2 => (ns.clone(), 1u64..60).prop_map(|(ns, ttl_ms)| Command::LeaseGrant { ns, ttl_ms }),
        2 => (ns.clone(), LEASE_IDS).prop_map(|(ns, id)| Command::LeaseKeepAlive { ns, id }),
        1 => (ns, LEASE_IDS).prop_map(|(ns, id)| Command::LeaseRevoke { ns, id }),
    ]
}

/// Token commands over two ids: plain creates, creates that expire (at an absolute time around
/// the logs' clocks, or after a TTL), and revokes.
fn arb_token_cmd() -> impl Strategy<Value = Command> {
    let id = proptest::sample::select(TOKEN_IDS).prop_map(str::to_string);
    let expires = prop_oneof![(900u64..1_200).prop_map(TokenExpiry::At), (1u64..60).prop_map(TokenExpiry::After)];
    let create = |id: String| (id, "team".to_string(), vec![7u8; 4], 3u8);
    prop_oneof![
        1 => id.clone().prop_map(move |id| {
            let (id, namespace, hash, perms) = create(id);
            Command::CreateToken { id, namespace, hash, perms }
        }),
        2 => (id.clone(), expires).prop_map(move |(id, expires)| {
            let (id, namespace, hash, perms) = create(id);
            Command::CreateTokenExpiring { id, namespace, hash, perms, expires }
        }),
        1 => id.prop_map(|id| Command::RevokeToken { id }),
    ]
}

fn arb_cmd() -> impl Strategy<Value = Command> {
    prop_oneof![
        8 => arb_key_cmd().prop_filter("gets only travel in batches", |c| !matches!(c, Command::Get { .. })),
        2 => proptest::collection::vec(arb_key_cmd(), 1..4).prop_map(Command::Batch),
        1 => Just(Command::Expire),
        2 => arb_token_cmd(),
        3 => arb_lease_cmd(),
        3 => arb_queue_cmd(),
    ]
}

/// One proposal of a generated log: its term, the leader's stamp, its commands.
type Step = (u64, u64, Vec<Command>);

/// Proposals with leader stamps that mostly advance but sometimes go back (a new leader with a
/// slower clock): the logical clock must never move backwards. The term sometimes grows.
fn arb_log() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec((0u64..60, 0u8..8, proptest::collection::vec(arb_cmd(), 1..4)), 1..40).prop_map(|steps| {
        let (mut t, mut term) = (1_000u64, 1u64);
        steps
            .into_iter()
            .map(|(d, new_term, cmds)| {
                t = if d < 5 { t.saturating_sub(d * 10) } else { t + d };
                term += u64::from(new_term == 0);
                (term, t, cmds)
            })
            .collect()
    })
}

fn entries(log: &[Step]) -> Vec<Entry> {
    log.iter()
        .enumerate()
        .map(|(i, (term, now_ms, cmds))| Entry {
            log_id: LogId::new(CommittedLeaderId::new(*term, 1), i as u64 + 1),
            payload: EntryPayload::Normal(Proposal {
                now_ms: *now_ms,
                limits: Limits { max_keys_per_namespace: MAX_KEYS },
                cmds: cmds.as_slice().into(),
            }),
        })
        .collect()
}

/// Every raw (key, value) pair of a tree, in order.
type Dump = Vec<(Vec<u8>, Vec<u8>)>;
/// Token ids with their expiries.
type Tokens = Vec<(String, Option<u64>)>;

/// Applies `entries` in chunks of the given sizes; returns every command result, the tree and
/// the tokens a reader of it accepts.
fn replay(entries: &[Entry], chunks: &[usize]) -> (Vec<CmdResult>, Dump, Tokens) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("sm").unwrap();
    let mut results = Vec::new();
    let mut rest = entries;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (now, later) = rest.split_at(n);
        let mut a = Applier::new(&tree).unwrap();
        for e in now {
            results.extend(a.apply_entry(e).unwrap().results);
        }
        a.finish().unwrap().write_to(&tree).unwrap();
        rest = later;
    }
    // Everything but the redo record, which holds the last run and so depends on where runs
    // were cut.
    let dump = tree
        .iter()
        .map(|kv| kv.unwrap())
        .filter(|(k, _)| k.as_ref() != super::keys::META_REDO)
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    (results, dump, live_tokens(&tree))
}

/// The tokens a reader of `tree` accepts at the tree's own clock, with their expiries.
fn live_tokens(tree: &sled::Tree) -> Tokens {
    let reader = super::SmReader {
        live: std::sync::Arc::new(super::Live::new(tree.clone())),
        clock: Default::default(),
        feed: tokio::sync::broadcast::channel(1).0,
    };
    super::load_clock(tree, &reader.clock).unwrap();
    reader.tokens().unwrap().into_iter().map(|(id, r)| (id, r.expires_at)).collect()
}

/// The reference semantics, written as plainly as possible.
#[derive(Default, Clone)]
struct Model {
    clock: u64,
    /// (namespace, key) → (value, version, expires_at); expired keys stay until `Expire`.
    items: BTreeMap<(String, String), (String, u64, Option<u64>)>,
    /// Token id → expires_at; expired tokens stay until `Expire`.
    tokens: BTreeMap<String, Option<u64>>,
    /// Lease id → (namespace, ttl, expires_at); expired leases stay until `Expire`.
    leases: BTreeMap<u64, (String, u64, u64)>,
    /// Ids handed out so far.
    granted: u64,
    /// (namespace, key) → the lease it is attached to.
    attached: BTreeMap<(String, String), u64>,
    /// The last term whose first proposal renewed the leases.
    lease_term: u64,
    /// (namespace, queue, name) → its waiters in order: (token, lease, value).
    queues: BTreeMap<(String, Queue, String), Vec<Queued>>,
    /// (namespace, lock) → nobody holds it before this clock (a lock delay).
    lock_delays: BTreeMap<(String, String), u64>,
}

/// A queued waiter in the model: (token, lease, value, lock delay).
type Queued = (u64, u64, String, u64);

type Slot = (String, u64, Option<u64>);

impl Model {
    fn live(&self, ns: &str, key: &str) -> Option<&Slot> {
        self.items.get(&(ns.into(), key.into())).filter(|(_, _, exp)| exp.is_none_or(|t| t > self.clock))
    }

    fn live_tokens(&self) -> Tokens {
        let live = |exp: &Option<u64>| exp.is_none_or(|t| t > self.clock);
        self.tokens.iter().filter(|(_, exp)| live(exp)).map(|(id, exp)| (id.clone(), *exp)).collect()
    }

    fn create_token(&mut self, id: &str, expires: Option<TokenExpiry>) -> CmdResult {
        if self.tokens.contains_key(id) {
            return CmdResult::Refused(Refusal::KeyExists);
        }
        let expires_at = expires.map(|e| match e {
            TokenExpiry::At(t) => t,
            TokenExpiry::After(ttl) => self.clock + ttl,
        });
        self.tokens.insert(id.to_string(), expires_at);
        CmdResult::TokenCreated { id: id.to_string(), expires_at }
    }

    fn physical(&self, ns: &str, key: &str) -> bool {
        self.items.contains_key(&(ns.into(), key.into()))
    }

    /// A namespace's quota counts its keys and its queued waiters.
    fn full(&self, ns: &str) -> bool {
        let keys = self.items.keys().filter(|(n, _)| n == ns).count();
        let waiters: usize = self.queues.iter().filter(|((n, _, _), _)| n == ns).map(|(_, w)| w.len()).sum();
        (keys + waiters) as u64 >= MAX_KEYS
    }

    /// The first waiter, if its lease is live.
    fn holder(&self, ns: &str, queue: Queue, name: &str) -> Option<Queued> {
        if queue == Queue::Lock
            && self.lock_delays.get(&(ns.to_string(), name.to_string())).is_some_and(|u| *u > self.clock)
        {
            return None;
        }
        let first = self.queues.get(&(ns.to_string(), queue, name.to_string()))?.first()?;
        self.live_lease(ns, first.1).map(|_| first.clone())
    }

    fn holds(&self, cond: &Condition, ns: &str, key: &str) -> Option<Refusal> {
        let cur = self.live(ns, key);
        let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        match cond {
            Condition::None => None,
            Condition::IfAbsent => cur.map(|_| Refusal::KeyExists),
            Condition::IfVersion(v) => {
                (cur.map(|c| c.1) != Some(*v)).then_some(Refusal::VersionMismatch { current: cur.map(|c| c.1) })
            }
            Condition::IfValue(x) => (cur.map(|c| json(&c.0)) != Some(json(x))).then_some(Refusal::ValueMismatch),
            Condition::IfFence { lock, token } => {
                (self.holder(ns, Queue::Lock, lock).map(|h| h.0) != Some(*token)).then_some(Refusal::Fenced)
            }
        }
    }

    fn item(&self, ns: &str, key: &str) -> CmdResult {
        let (value, version, expires_at) = self.items[&(ns.to_string(), key.to_string())].clone();
        CmdResult::Item(Item { key: key.into(), value, version, expires_at })
    }

    /// The start of a proposal: the clock moves, and a new term renews every lease to at least
    /// a full TTL from now.
    fn begin(&mut self, term: u64, now: u64) {
        self.clock = self.clock.max(now);
        if term > self.lease_term {
            self.lease_term = term;
            let clock = self.clock;
            for (_, ttl, exp) in self.leases.values_mut() {
                *exp = (*exp).max(clock + *ttl);
            }
        }
    }

    fn live_lease(&self, ns: &str, id: u64) -> Option<(String, u64, u64)> {
        self.leases.get(&id).filter(|(n, _, exp)| n == ns && *exp > self.clock).cloned()
    }

    /// Ends lease `id` with every key still attached to it; how many keys went.
    fn end_lease(&mut self, id: u64) -> u64 {
        self.leases.remove(&id);
        let clock = self.clock;
        for ((ns, queue, name), waiters) in self.queues.iter_mut() {
            // A lock's holder that leaves with its lease starts its lock delay.
            if let Some((_, lease, _, delay)) = waiters.first() {
                if *lease == id && *queue == Queue::Lock && *delay > 0 {
                    let until = self.lock_delays.entry((ns.clone(), name.clone())).or_insert(0);
                    *until = (*until).max(clock + delay);
                }
            }
            waiters.retain(|w| w.1 != id);
        }
        self.queues.retain(|_, w| !w.is_empty());
        let keys: Vec<_> = self.attached.iter().filter(|(_, l)| **l == id).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            self.attached.remove(k);
            self.items.remove(k);
        }
        keys.len() as u64
    }

    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        index: u64,
        ns: &str,
        key: &str,
        value: &str,
        ttl_ms: Option<u64>,
        cond: &Condition,
        lease: Option<u64>,
    ) -> CmdResult {
        if let Some(r) = self.holds(cond, ns, key) {
            return CmdResult::Refused(r);
        }
        if lease.is_some_and(|id| self.live_lease(ns, id).is_none()) {
            return CmdResult::Refused(Refusal::LeaseNotFound);
        }
        if !self.physical(ns, key) && self.full(ns) {
            return CmdResult::Refused(Refusal::QuotaExceeded);
        }
        let k = (ns.to_string(), key.to_string());
        self.items.insert(k.clone(), (value.to_string(), index, ttl_ms.map(|t| self.clock + t)));
        match lease {
            Some(id) => self.attached.insert(k, id),
            None => self.attached.remove(&k),
        };
        self.item(ns, key)
    }

    fn apply_at(&mut self, index: u64, cmd: &Command) -> CmdResult {
        match cmd {
            Command::Get { ns, key } => match self.live(ns, key) {
                Some(_) => self.item(ns, key),
                None => CmdResult::Absent { key: key.clone() },
            },
            Command::Set { ns, key, value, ttl_ms, cond } => self.set(index, ns, key, value, *ttl_ms, cond, None),
            Command::SetLeased { ns, key, value, ttl_ms, cond, lease } => {
                self.set(index, ns, key, value, *ttl_ms, cond, Some(*lease))
            }
            Command::LeaseGrant { ns, ttl_ms } => {
                if self.leases.values().filter(|(n, _, _)| n == ns).count() as u64 >= MAX_KEYS {
                    return CmdResult::Refused(Refusal::QuotaExceeded);
                }
                self.granted += 1;
                let expires_at = self.clock + ttl_ms;
                self.leases.insert(self.granted, (ns.clone(), *ttl_ms, expires_at));
                CmdResult::Lease(Lease { id: self.granted, ttl_ms: *ttl_ms, expires_at })
            }
            Command::LeaseKeepAlive { ns, id } => match self.live_lease(ns, *id) {
                Some((_, ttl_ms, _)) => {
                    let expires_at = self.clock + ttl_ms;
                    self.leases.insert(*id, (ns.clone(), ttl_ms, expires_at));
                    CmdResult::Lease(Lease { id: *id, ttl_ms, expires_at })
                }
                None => CmdResult::Refused(Refusal::LeaseNotFound),
            },
            Command::Enqueue { ns, queue, name, lease, value, lock_delay_ms } => {
                if self.live_lease(ns, *lease).is_none() {
                    return CmdResult::Refused(Refusal::LeaseNotFound);
                }
                let k = (ns.clone(), *queue, name.clone());
                if let Some((token, ..)) = self.queues.get(&k).and_then(|w| w.iter().find(|w| w.1 == *lease)) {
                    let token = *token;
                    return CmdResult::Queued { token, holder: self.holder(ns, *queue, name).map(|h| h.0) };
                }
                if self.full(ns) {
                    return CmdResult::Refused(Refusal::QuotaExceeded);
                }
                self.queues.entry(k).or_default().push((index, *lease, value.clone(), *lock_delay_ms));
                CmdResult::Queued { token: index, holder: self.holder(ns, *queue, name).map(|h| h.0) }
            }
            Command::Dequeue { ns, queue, name, token } => {
                let k = (ns.clone(), *queue, name.clone());
                let Some(waiters) = self.queues.get_mut(&k) else { return CmdResult::Refused(Refusal::NotFound) };
                let before = waiters.len();
                waiters.retain(|w| w.0 != *token);
                let found = waiters.len() < before;
                if waiters.is_empty() {
                    self.queues.remove(&k);
                }
                if found {
                    CmdResult::Dequeued { token: *token }
                } else {
                    CmdResult::Refused(Refusal::NotFound)
                }
            }
            Command::Proclaim { ns, name, token, value } => match self.holder(ns, Queue::Election, name) {
                Some((t, ..)) if t == *token => {
                    let k = (ns.clone(), Queue::Election, name.clone());
                    self.queues.get_mut(&k).unwrap()[0].2 = value.clone();
                    CmdResult::Proclaimed { token: *token }
                }
                _ => CmdResult::Refused(Refusal::Fenced),
            },
            Command::LeaseRevoke { ns, id } => match self.live_lease(ns, *id) {
                Some(_) => CmdResult::LeaseRevoked { id: *id, keys: self.end_lease(*id) },
                None => CmdResult::Refused(Refusal::LeaseNotFound),
            },
            Command::Delete { ns, key, cond } => {
                if self.live(ns, key).is_none() {
                    return CmdResult::Refused(Refusal::NotFound);
                }
                if let Some(r) = self.holds(cond, ns, key) {
                    return CmdResult::Refused(r);
                }
                self.items.remove(&(ns.clone(), key.clone()));
                self.attached.remove(&(ns.clone(), key.clone()));
                CmdResult::Deleted { key: key.clone() }
            }
            Command::IncrementFenced { ns, key, delta, ttl_ms, cond } => {
                if let Some(r) = self.holds(cond, ns, key) {
                    return CmdResult::Refused(r);
                }
                self.apply_at(
                    index,
                    &Command::Increment { ns: ns.clone(), key: key.clone(), delta: *delta, ttl_ms: *ttl_ms },
                )
            }
            Command::Increment { ns, key, delta, ttl_ms } => {
                let (cur, exp) = match self.live(ns, key) {
                    None => (Number::Int(0), ttl_ms.map(|t| self.clock + t)),
                    Some((v, _, exp)) => match serde_json::from_str::<serde_json::Value>(v).unwrap() {
                        serde_json::Value::Number(n) => {
                            (n.as_i64().map(Number::Int).unwrap_or(Number::Float(n.as_f64().unwrap())), *exp)
                        }
                        _ => return CmdResult::Refused(Refusal::NotANumber),
                    },
                };
                let Some(v) = add(cur, *delta) else { return CmdResult::Refused(Refusal::Overflow) };
                if !self.physical(ns, key) && self.full(ns) {
                    return CmdResult::Refused(Refusal::QuotaExceeded);
                }
                self.items.insert((ns.clone(), key.clone()), (v, index, exp));
                self.item(ns, key)
            }
            Command::Expire => {
                let clock = self.clock;
                let before = self.items.len();
                self.items.retain(|_, (_, _, exp)| exp.is_none_or(|t| t > clock));
                let items = &self.items;
                self.attached.retain(|k, _| items.contains_key(k));
                self.tokens.retain(|_, exp| exp.is_none_or(|t| t > clock));
                let mut count = (before - self.items.len()) as u64;
                let due: Vec<u64> =
                    self.leases.iter().filter(|(_, (_, _, exp))| *exp <= clock).map(|(id, _)| *id).collect();
                for id in due {
                    count += self.end_lease(id);
                }
                self.lock_delays.retain(|_, until| *until > clock);
                CmdResult::Expired { count }
            }
            Command::CreateToken { id, .. } => self.create_token(id, None),
            Command::CreateTokenExpiring { id, expires, .. } => self.create_token(id, Some(*expires)),
            Command::RevokeToken { id } => {
                let existed = self.live_tokens().iter().any(|(t, _)| t == id);
                self.tokens.remove(id);
                CmdResult::TokenRevoked { id: id.clone(), existed }
            }
            Command::Batch(ops) => {
                let saved = self.clone();
                let mut out = Vec::new();
                for (i, op) in ops.iter().enumerate() {
                    match self.apply_at(index, op) {
                        CmdResult::Refused(Refusal::NotFound) if matches!(op, Command::Delete { .. }) => {
                            let Command::Delete { key, .. } = op else { unreachable!() };
                            out.push(CmdResult::Absent { key: key.clone() });
                        }
                        CmdResult::Refused(refusal) => {
                            *self = saved;
                            return CmdResult::BatchRefused { index: i as u32, refusal };
                        }
                        r => out.push(r),
                    }
                }
                CmdResult::Batch(out)
            }
            other => panic!("model does not cover {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn replicas_agree_with_each_other_and_the_model(log in arb_log(), chunks in proptest::collection::vec(1usize..6, 1..5)) {
        let es = entries(&log);
        let (r1, d1, t1) = replay(&es, &[1]);
        let (r2, d2, t2) = replay(&es, &chunks);
        prop_assert_eq!(&r1, &r2);
        prop_assert_eq!(d1, d2);
        prop_assert_eq!(&t1, &t2);

        let mut m = Model::default();
        let mut expect = Vec::new();
        for (i, (term, now, cmds)) in log.iter().enumerate() {
            m.begin(*term, *now);
            for c in cmds {
                expect.push(m.apply_at(i as u64 + 1, c));
            }
        }
        prop_assert_eq!(r1, expect);
        prop_assert_eq!(t1, m.live_tokens(), "the tokens a reader accepts");
    }
}

#[test]
fn integer_increments_are_checked_and_floats_must_stay_finite() {
    assert_eq!(add(Number::Int(i64::MAX), Number::Int(1)), None);
    assert_eq!(add(Number::Int(2), Number::Int(-5)).as_deref(), Some("-3"));
    assert_eq!(add(Number::Int(1), Number::Float(0.5)).as_deref(), Some("1.5"));
    assert_eq!(add(Number::Float(f64::MAX), Number::Float(f64::MAX)), None);
}

/// Applies commands as one entry at `index` to `tree`.
fn apply_at(tree: &sled::Tree, index: u64, cmds: Vec<Command>) {
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal { now_ms: 1, limits: Limits::default(), cmds: cmds.into() }),
    };
    let mut a = Applier::new(tree).unwrap();
    a.apply_entry(&entry).unwrap();
    a.finish().unwrap().write_to(tree).unwrap();
}

fn set(key: &str) -> Command {
    Command::Set { ns: "n".into(), key: key.into(), value: "1".into(), ttl_ms: None, cond: Condition::None }
}

/// Private keys (a dialect's own records) are left out of every scan whose prefix is not
/// private, whatever `after` says, and a private namespace has no quota.
#[test]
fn scans_skip_private_keys_and_private_namespaces_have_no_quota() {
    use crate::model::private;
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("sm").unwrap();
    let hidden = private::key("kvdb", "abc");
    apply_at(&tree, 1, vec![set("a"), set(&hidden), set(&format!("{hidden}/k"))]);
    let reader = super::SmReader {
        live: std::sync::Arc::new(super::Live::new(tree.clone())),
        clock: Default::default(),
        feed: tokio::sync::broadcast::channel(1).0,
    };
    let keys = |prefix: &str, after: Option<&str>| -> Vec<String> {
        reader.scan("n", prefix, after, 100, usize::MAX).unwrap().0.into_iter().map(|i| i.key).collect()
    };
    assert_eq!(keys("", None), vec!["a"]);
    assert_eq!(keys("", Some("\u{1}")), vec!["a"], "a cursor cannot step into the private space");
    assert_eq!(keys(&private::key("kvdb", ""), None), vec![hidden.clone(), format!("{hidden}/k")]);

    let quota = Limits { max_keys_per_namespace: 1 };
    let apply_limited = |index: u64, cmd: Command| {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal { now_ms: 1, limits: quota, cmds: vec![cmd].into() }),
        };
        let mut a = Applier::new(&tree).unwrap();
        let r = a.apply_entry(&entry).unwrap();
        a.finish().unwrap().write_to(&tree).unwrap();
        r.results
    };
    let in_ns = |ns: &str, key: &str| Command::Set {
        ns: ns.into(),
        key: key.into(),
        value: "1".into(),
        ttl_ms: None,
        cond: Condition::None,
    };
    let lookup_ns = format!("{}kvdb", private::MARK);
    for (i, key) in ["x", "y", "z"].into_iter().enumerate() {
        let r = apply_limited(2 + i as u64, in_ns(&lookup_ns, key));
        assert!(matches!(r[..], [CmdResult::Item(_)]), "{r:?}");
    }
    let r = apply_limited(5, in_ns("m", "one"));
    assert!(matches!(r[..], [CmdResult::Item(_)]), "{r:?}");
    let r = apply_limited(6, in_ns("m", "two"));
    assert!(matches!(r[..], [CmdResult::Refused(Refusal::QuotaExceeded)]), "{r:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Paging through a namespace with cursors while other keys are created and deleted
    /// between pages returns every key that existed for the whole scan exactly once, in
    /// order, and nothing that never existed.
    #[test]
    fn scan_cursors_return_stable_keys_exactly_once_under_concurrent_writes(
        stable in proptest::collection::btree_set("[a-f]{1,3}", 0..30),
        churn in proptest::collection::vec(("[a-f]{1,3}", any::<bool>()), 0..60),
        limit in 1usize..7,
    ) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("sm").unwrap();
        let mut index = 1;
        apply_at(&tree, index, stable.iter().map(|k| set(k)).collect());
        let reader = super::SmReader {
            live: std::sync::Arc::new(super::Live::new(tree.clone())),
            clock: Default::default(),
            feed: tokio::sync::broadcast::channel(1).0,
        };
        let mut ever: std::collections::BTreeSet<String> = stable.iter().cloned().collect();
        let mut churn = churn.into_iter().filter(|(k, _)| !stable.contains(k));
        let mut seen: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = reader.scan("n", "", after.as_deref(), limit, usize::MAX).unwrap();
            prop_assert!(page.len() <= limit);
            seen.extend(page.iter().map(|i| i.key.clone()));
            // Writes land between pages, as they would between a client's requests.
            for (k, create) in churn.by_ref().take(3) {
                index += 1;
                let cmd = if create { set(&k) } else { Command::Delete { ns: "n".into(), key: k.clone(), cond: Condition::None } };
                if create { ever.insert(k.clone()); }
                apply_at(&tree, index, vec![cmd]);
            }
            if !more { break; }
            after = page.last().map(|i| i.key.clone());
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(&sorted, &seen, "keys must come strictly in order, each once");
        for k in &stable {
            prop_assert!(seen.contains(k), "stable key {} missing", k);
        }
        for k in &seen {
            prop_assert!(ever.contains(k), "key {} never existed", k);
        }
    }
}

/// The tree's replicated content: what a snapshot must reproduce.
fn replicated(tree: &sled::Tree) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let local = [
        super::keys::META_LAST_APPLIED,
        super::keys::META_MEMBERSHIP,
        super::keys::META_INSTALLING,
        super::keys::META_REDO,
        super::keys::META_HISTORY,
    ];
    tree.iter()
        .map(|kv| kv.unwrap())
        .filter(|(k, _)| !local.contains(&k.as_ref()) && !super::history::is_history_key(k))
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// A snapshot build scans the live tree while applies go on (see `cut.rs`). Whatever those
/// applies change, delete or create meanwhile, anywhere in the key range, the file must hold
/// exactly the replicated state as of the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_built_during_applies_holds_the_state_at_its_cut() {
    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;

    let dir = tempfile::tempdir().unwrap();
    let mut sm = super::StateMachine::open(dir.path(), &super::SmOptions::default()).unwrap();
    let mut index = 0u64;
    let mut entry = |cmds: Vec<Command>| {
        index += 1;
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal { now_ms: 1_000, limits: Limits::default(), cmds: cmds.into() }),
        }
    };
    let key = |i: u64| format!("k{i:06}");
    const KEYS: u64 = 20_000;
    for chunk in 0..KEYS / 500 {
        let cmds = (chunk * 500..(chunk + 1) * 500).map(|i| set(&key(i))).collect();
        sm.apply(vec![entry(cmds)]).await.unwrap();
    }
    let at_cut = replicated(&sm.tree());

    let mut builder = sm.get_snapshot_builder().await;
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut rounds = 0;
    while !build.is_finished() && rounds < 100_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let k = key(rng % KEYS);
        let fresh = format!("n{:06}", rng % 1_000);
        let cmds = vec![
            Command::Set { ns: "n".into(), key: k.clone(), value: "2".into(), ttl_ms: None, cond: Condition::None },
            Command::Delete { ns: "n".into(), key: key((rng >> 20) % KEYS), cond: Condition::None },
            set(&fresh),
        ];
        sm.apply(vec![entry(cmds)]).await.unwrap();
        rounds += 1;
    }
    let snap = tokio::time::timeout(std::time::Duration::from_secs(60), build).await.unwrap().unwrap().unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(KEYS / 500));

    let loaded = sled::Config::new().temporary(true).open().unwrap().open_tree("x").unwrap();
    super::snapshot::load_into(&super::current_snapshot_path(dir.path()), &loaded).unwrap();
    let got = replicated(&loaded);
    assert_eq!(got.len(), at_cut.len(), "pair count differs ({rounds} applies ran during the build)");
    assert!(got == at_cut, "snapshot content differs from the state at the cut ({rounds} applies ran)");
    // The applies themselves all landed in the live tree.
    assert_ne!(replicated(&sm.tree()), at_cut);
}

/// Opens the state machine in `dir`. A state machine dropped just before still has sled's
/// background threads holding the db's file lock for a moment, so a reopen retries for a while.
fn reopen(dir: &std::path::Path) -> super::StateMachine {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match super::StateMachine::open(dir, &super::SmOptions::default()) {
            Ok(sm) => return sm,
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open {}: {e}", dir.display()),
        }
    }
}

fn entry_at(index: u64, cmds: Vec<Command>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal { now_ms: 1_000, limits: Limits::default(), cmds: cmds.into() }),
    }
}

/// A follower installing a snapshot keeps serving stale reads. Every read during the install
/// must see the old state or the new one: a key present in both is never missing, as it was
/// when installs cleared the live tree and then loaded the file into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_an_install_see_the_old_state_or_the_new_one() {
    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    const KEYS: u64 = 50_000;
    // Sorts after every bulk key, so a clear-then-load install would lose it for the whole load.
    const STABLE: &str = "zz-stable";
    let src_dir = tempfile::tempdir().unwrap();
    let mut src = super::StateMachine::open(src_dir.path(), &super::SmOptions::default()).unwrap();
    let mut index = 0;
    for chunk in 0..KEYS / 1_000 {
        index += 1;
        src.apply(vec![entry_at(
            index,
            (chunk * 1_000..(chunk + 1) * 1_000).map(|i| set(&format!("k{i:06}"))).collect(),
        )])
        .await
        .unwrap();
    }
    index += 1;
    src.apply(vec![entry_at(index, vec![set(STABLE)])]).await.unwrap();
    let snap = src.get_snapshot_builder().await.build_snapshot().await.unwrap();

    let dst_dir = tempfile::tempdir().unwrap();
    let mut dst = super::StateMachine::open(dst_dir.path(), &super::SmOptions::default()).unwrap();
    dst.apply(vec![entry_at(1, vec![set(STABLE), set("only-before")])]).await.unwrap();
    let reader = dst.reader();
    let (stop, reads, misses) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let looper = {
        let (reader, stop, reads, misses) = (reader.clone(), stop.clone(), reads.clone(), misses.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if reader.get("n", STABLE).unwrap().is_none() {
                    misses.fetch_add(1, Ordering::Relaxed);
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    dst.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();

    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(misses.load(Ordering::Relaxed), 0, "a read during the install found no {STABLE}");
    assert!(reader.get("n", "only-before").unwrap().is_none(), "the old state must be gone");
    assert!(reader.get("n", "k000000").unwrap().is_some(), "the snapshot's state must be live");
    assert_eq!(replicated(&dst.tree()), replicated(&src.tree()));
    let state_trees: Vec<_> = dst.db.tree_names().into_iter().filter(|n| super::keys::is_state_tree(n)).collect();
    assert_eq!(state_trees.len(), 1, "the replaced tree must be dropped: {state_trees:?}");

    // A restart opens the installed tree, not the first one.
    drop((dst, reader));
    let dst = reopen(dst_dir.path());
    assert_eq!(replicated(&dst.tree()), replicated(&src.tree()));
}

/// Opens the state machine in `dir` as if the kernel's boot id were `boot`, retrying like
/// [`reopen`].
fn reopen_in_boot(dir: &std::path::Path, boot: &str) -> super::StateMachine {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match super::StateMachine::open_in_boot(dir, &super::SmOptions::default(), Some(boot)) {
            Ok(sm) => return sm,
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open {}: {e}", dir.display()),
        }
    }
}

/// An unclean stop followed by a machine restart (another boot id: power loss, a kernel crash,
/// the disk moved to another host) leaves sled untrusted: it is rebuilt from its snapshot file,
/// or emptied when there is none, and openraft re-applies the rest from the WAL. A clean close
/// fsyncs sled and is trusted in any boot.
#[tokio::test]
async fn after_a_machine_restart_only_a_cleanly_closed_state_machine_is_trusted() {
    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;

    let applied = |sm: &mut super::StateMachine| sm.last_applied().unwrap().map(|l| l.index);

    let with_snapshot = tempfile::tempdir().unwrap();
    {
        let mut sm = reopen_in_boot(with_snapshot.path(), "boot-1");
        sm.apply(vec![entry_at(1, vec![set("a")])]).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        sm.apply(vec![entry_at(2, vec![set("b")])]).await.unwrap();
        sm.torn = true;
    }
    let mut sm = reopen_in_boot(with_snapshot.path(), "boot-2");
    assert_eq!(applied(&mut sm), Some(1), "rebuilt from the snapshot at index 1");
    assert!(sm.reader().get("n", "a").unwrap().is_some());
    assert!(sm.reader().get("n", "b").unwrap().is_none(), "entry 2 comes back from the WAL, not from sled");

    let without = tempfile::tempdir().unwrap();
    {
        let mut sm = reopen_in_boot(without.path(), "boot-1");
        sm.apply(vec![entry_at(1, vec![set("a")])]).await.unwrap();
        sm.torn = true;
    }
    let mut sm = reopen_in_boot(without.path(), "boot-2");
    assert_eq!(applied(&mut sm), None, "no snapshot: rebuilt from nothing");
    assert!(sm.reader().get("n", "a").unwrap().is_none());

    let clean = tempfile::tempdir().unwrap();
    {
        let mut sm = reopen_in_boot(clean.path(), "boot-1");
        sm.apply(vec![entry_at(1, vec![set("a")]), entry_at(2, vec![set("b")])]).await.unwrap();
    }
    let mut sm = reopen_in_boot(clean.path(), "boot-2");
    assert_eq!(applied(&mut sm), Some(2), "a clean close keeps every apply, in any boot");
    assert!(sm.reader().get("n", "b").unwrap().is_some());
    // Opening recorded this boot as the one writing sled: dropped torn, it must not look clean
    // to the next boot.
    sm.torn = true;
    drop(sm);
    assert_eq!(applied(&mut reopen_in_boot(clean.path(), "boot-3")), None);
}

/// A process crash (same boot id) keeps sled: the kernel holds everything sled wrote, and sled
/// recovers a prefix of this process's writes. That prefix can end anywhere inside an apply's
/// write set; the redo record written before the set lets the open finish it, so the state is
/// exactly the one after the apply, whichever prefix of its keys reached sled. Increments and
/// deletes make a repeated or half-done apply visible.
#[tokio::test]
async fn a_crash_inside_an_apply_is_finished_from_its_redo_record() {
    use openraft::storage::RaftStateMachine;

    let incr = |key: &str, by: i64| Command::Increment {
        ns: "n".into(),
        key: key.into(),
        delta: Number::Int(by),
        ttl_ms: Some(60_000),
    };
    let del = |key: &str| Command::Delete { ns: "n".into(), key: key.into(), cond: Condition::None };
    let before = || {
        vec![
            entry_at(1, vec![set("a"), set("b"), incr("c", 5)]),
            entry_at(2, vec![incr("c", 1), set("d"), incr("e", 2)]),
        ]
    };
    let torn = || vec![entry_at(3, vec![incr("c", 10), del("a"), set("f"), incr("e", 3)]), entry_at(4, vec![set("g")])];
    // The replicated keys, the applied index, and the watch history as readers see it with its
    // bookkeeping (records a crash left above the applied index are invisible).
    let state = |sm: &mut super::StateMachine| {
        let read = sm.reader().history_after(0, usize::MAX).unwrap().unwrap();
        let history: Vec<_> = read.records.into_iter().map(|(i, c)| (i, c.to_vec())).collect();
        let meta = sm.tree().get(super::keys::META_HISTORY).unwrap().map(|v| v.to_vec());
        (replicated(&sm.tree()), sm.last_applied().unwrap(), history, meta)
    };

    let reference = tempfile::tempdir().unwrap();
    let (after_before, after_torn) = {
        let mut sm = reopen_in_boot(reference.path(), "boot-1");
        sm.apply(before()).await.unwrap();
        let b = state(&mut sm);
        sm.apply(torn()).await.unwrap();
        (b, state(&mut sm))
    };
    assert_ne!(after_before, after_torn);

    // The write set of the torn run, as apply computes it on the state after `before`.
    let dir = tempfile::tempdir().unwrap();
    let (set_size, record_step) = {
        let mut sm = reopen_in_boot(dir.path(), "boot-1");
        sm.apply(before()).await.unwrap();
        let tree = sm.tree();
        let mut applier = Applier::new(&tree).unwrap();
        for e in torn() {
            applier.apply_entry(&e).unwrap();
        }
        let writes = applier.finish().unwrap();
        (writes.steps(), writes.record_step())
    };
    assert_eq!(record_step, 2, "the torn run adds two history records, written before its redo record");
    assert!(set_size >= 10, "the torn run writes history, data, expiry, count and meta keys ({set_size})");

    for landed in 0..=set_size + 1 {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut sm = reopen_in_boot(dir.path(), "boot-1");
            sm.apply(before()).await.unwrap();
            // What a crash leaves: the first `landed` single-key writes of the run, in the order
            // apply makes them (new history records, the redo record, the rest).
            let tree = sm.tree();
            let mut applier = Applier::new(&tree).unwrap();
            for e in torn() {
                applier.apply_entry(&e).unwrap();
            }
            applier.finish().unwrap().write_first(&tree, landed).unwrap();
            sm.torn = true;
        }
        let mut sm = reopen_in_boot(dir.path(), "boot-1");
        if landed <= record_step {
            assert!(state(&mut sm) == after_before, "no record: the state before the run, which the WAL re-applies");
            sm.apply(torn()).await.unwrap();
        }
        assert!(
            state(&mut sm) == after_torn,
            "{landed} of {set_size} keys landed: the state differs from a whole apply"
        );
        assert_eq!(sm.reader().get("n", "c").unwrap().map(|i| i.value), Some("16".to_string()));
    }
}

/// Applies write single keys (not sled batches), so what keeps a reader from seeing half of an
/// apply is the live lock. A scan is one read: it must never return the two keys of one atomic
/// batch from different entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_never_sees_part_of_an_apply() {
    use openraft::storage::RaftStateMachine;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let mut sm = super::StateMachine::open(dir.path(), &super::SmOptions::default()).unwrap();
    // Both keys take the entry's index as their version.
    let pair = || Command::Batch(vec![set("a"), set("b")]);
    sm.apply(vec![entry_at(1, vec![pair()])]).await.unwrap();
    let reader = sm.reader();
    let stop = Arc::new(AtomicBool::new(false));
    let looper = {
        let (reader, stop) = (reader.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut scans = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (items, _) = reader.scan("n", "", None, 10, usize::MAX).unwrap();
                assert_eq!(items.len(), 2);
                assert_eq!(items[0].version, items[1].version, "a scan saw half of an apply: {items:?}");
                scans += 1;
            }
            scans
        })
    };
    for i in 2..2_000 {
        sm.apply(vec![entry_at(i, vec![pair()])]).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(looper.join().unwrap() > 0);
}

fn stamped(index: u64, now_ms: u64, cmds: Vec<Command>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal { now_ms, limits: Limits::default(), cmds: cmds.into() }),
    }
}

fn expiring_token(id: &str, expires: TokenExpiry) -> Command {
    Command::CreateTokenExpiring { id: id.into(), namespace: "ns".into(), hash: vec![1, 2, 3], perms: 3, expires }
}

/// Raw keys of the tree under one prefix byte.
fn under(sm: &super::StateMachine, prefix: u8) -> Vec<Vec<u8>> {
    sm.tree().scan_prefix([prefix]).map(|kv| kv.unwrap().0.to_vec()).collect()
}

/// A token created with a TTL expires at the creating entry's clock plus the TTL: readers
/// accept it until the replicated clock reaches that instant and refuse it from then on, before
/// any sweep; the leader's ticker sees it due; `Expire` then deletes its record, its expiry and
/// its index entry. A token with an absolute expiry keeps that instant.
#[tokio::test]
async fn an_expiring_token_is_refused_once_the_clock_reaches_it_and_swept_by_expire() {
    use openraft::storage::RaftStateMachine;

    let dir = tempfile::tempdir().unwrap();
    let mut sm = super::StateMachine::open(dir.path(), &super::SmOptions::default()).unwrap();
    let created = sm
        .apply(vec![stamped(
            1,
            1_000,
            vec![expiring_token("ttl", TokenExpiry::After(100)), expiring_token("abs", TokenExpiry::At(5_000))],
        )])
        .await
        .unwrap();
    assert_eq!(
        created[0].results,
        vec![
            CmdResult::TokenCreated { id: "ttl".into(), expires_at: Some(1_100) },
            CmdResult::TokenCreated { id: "abs".into(), expires_at: Some(5_000) },
        ]
    );
    let reader = sm.reader();
    assert_eq!(reader.token("ttl").unwrap().map(|r| r.expires_at), Some(Some(1_100)));
    assert_eq!(reader.next_expiry(), Some(1_100), "the ticker must carry the clock past the token");

    sm.apply(vec![stamped(2, 1_099, vec![set("a")])]).await.unwrap();
    assert!(reader.token("ttl").unwrap().is_some(), "live until the clock reaches its expiry");

    sm.apply(vec![stamped(3, 1_100, vec![set("b")])]).await.unwrap();
    assert!(reader.token("ttl").unwrap().is_none(), "refused once the clock reaches its expiry");
    let listed: Vec<String> = reader.tokens().unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed, vec!["abs"], "an expired token is not listed");
    assert_eq!(under(&sm, super::keys::TOKEN_EXPIRY).len(), 2, "still stored until a sweep");

    let swept = sm.apply(vec![stamped(4, 1_100, vec![Command::Expire])]).await.unwrap();
    assert_eq!(swept[0].results, vec![CmdResult::Expired { count: 0 }], "tokens are not counted as keys");
    assert_eq!(under(&sm, super::keys::TOKEN), vec![super::keys::token_key("abs")]);
    assert_eq!(under(&sm, super::keys::TOKEN_EXPIRY), vec![super::keys::token_expiry_key("abs")]);
    assert_eq!(under(&sm, super::keys::TOKEN_EXPIRY_INDEX), vec![super::keys::token_index_key(5_000, "abs")]);
    assert_eq!(reader.next_expiry(), Some(5_000));

    let revoked = sm.apply(vec![stamped(5, 1_200, vec![Command::RevokeToken { id: "abs".into() }])]).await.unwrap();
    assert_eq!(revoked[0].results, vec![CmdResult::TokenRevoked { id: "abs".into(), existed: true }]);
    for prefix in [super::keys::TOKEN, super::keys::TOKEN_EXPIRY, super::keys::TOKEN_EXPIRY_INDEX] {
        assert!(under(&sm, prefix).is_empty(), "revoke leaves nothing under {:?}", prefix as char);
    }
    assert_eq!(reader.next_expiry(), None);
}

/// Entries written before tokens could expire stay in WALs and logs: a `CreateToken` encoded
/// by those builds still decodes to the same command and makes a token that never expires, and
/// the new command was appended after every old variant. The bytes are bincode's standard
/// encoding of variant 6 (id "id1", namespace "ns", hash [1, 2, 3], perms 3).
#[tokio::test]
async fn an_old_create_token_entry_still_decodes_and_applies() {
    use openraft::storage::RaftStateMachine;

    let old: &[u8] = &[6, 3, b'i', b'd', b'1', 2, b'n', b's', 3, 1, 2, 3, 3];
    let cmd: Command = crate::codec::decode(old).unwrap();
    assert_eq!(cmd, Command::CreateToken { id: "id1".into(), namespace: "ns".into(), hash: vec![1, 2, 3], perms: 3 });
    assert_eq!(crate::codec::encode(&cmd).unwrap(), old);
    let new = crate::codec::encode(&expiring_token("id1", TokenExpiry::After(1))).unwrap();
    assert_eq!(new[0], 9, "CreateTokenExpiring comes after RetireNode (8)");

    let dir = tempfile::tempdir().unwrap();
    let mut sm = super::StateMachine::open(dir.path(), &super::SmOptions::default()).unwrap();
    let r = sm.apply(vec![stamped(1, 1_000, vec![cmd])]).await.unwrap();
    assert_eq!(r[0].results, vec![CmdResult::TokenCreated { id: "id1".into(), expires_at: None }]);
    sm.apply(vec![stamped(2, u64::MAX, vec![Command::Expire])]).await.unwrap();
    let rec = sm.reader().token("id1").unwrap().expect("a token without expiry outlives any clock");
    assert_eq!((rec.namespace.as_str(), rec.perms, rec.created_ms, rec.expires_at), ("ns", 3, 1_000, None));
    assert!(under(&sm, super::keys::TOKEN_EXPIRY).is_empty() && under(&sm, super::keys::TOKEN_EXPIRY_INDEX).is_empty());
}

/// Applies `log` through a state machine that keeps `keep` entries of watch history, in runs
/// of `chunks` entries; returns it with every entry's published changes (the reference).
async fn with_history(
    dir: &std::path::Path,
    log: &[Step],
    chunks: &[usize],
    keep: u64,
) -> (super::StateMachine, BTreeMap<u64, Vec<super::history::Change>>) {
    use openraft::storage::RaftStateMachine;

    let opts = super::SmOptions {
        watch_history: super::history::Retention { entries: keep, bytes: 0, age_ms: 0 },
        ..Default::default()
    };
    let mut sm = super::StateMachine::open_in_boot(dir, &opts, Some("b")).unwrap();
    let mut feed = sm.reader().subscribe();
    let es = entries(log);
    let mut rest = es.as_slice();
    let mut sizes = chunks.iter().cycle();
    let mut reference = BTreeMap::new();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (now, later) = rest.split_at(n);
        sm.apply(now.to_vec()).await.unwrap();
        match &*feed.try_recv().unwrap() {
            super::Feed::Applied { first, last, changes, .. } => {
                assert_eq!((*first, *last), (now[0].log_id.index, now[n - 1].log_id.index));
                for (i, c) in changes.as_ref().expect("small runs ride the feed") {
                    reference.insert(*i, c.as_ref().clone());
                }
            }
            other => panic!("{other:?}"),
        }
        rest = later;
    }
    (sm, reference)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Watch history under retention, read back from any resume point (as after a disconnect
    /// anywhere) in pages of any size: exactly the changes after that point, in order, with
    /// nothing missing or repeated, or `compacted` when the point is below the kept history,
    /// which always reaches back `keep` entries.
    #[test]
    fn history_resumes_exactly_after_any_point_or_says_compacted(
        log in arb_log(),
        chunks in proptest::collection::vec(1usize..6, 1..5),
        keep in 1u64..30,
        page in 1usize..8,
        resume_points in proptest::collection::vec(0u64..45, 1..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (sm, reference) = rt.block_on(with_history(dir.path(), &log, &chunks, keep));
        let reader = sm.reader();
        let applied = log.len() as u64;
        prop_assert_eq!(reader.applied_index(), applied);
        let floor = applied.saturating_sub(keep);
        for &r in &resume_points {
            let r = r.min(applied);
            let mut got = Vec::new();
            let mut at = r;
            let outcome = loop {
                match reader.history_after(at, page).unwrap() {
                    Err(compacted) => break Err(compacted),
                    Ok(read) => {
                        prop_assert!(read.upto > at || read.upto == applied, "a read makes progress");
                        got.extend(read.records.into_iter().map(|(i, c)| (i, c.as_ref().clone())));
                        at = read.upto;
                        if at == applied {
                            break Ok(());
                        }
                    }
                }
            };
            match outcome {
                Ok(()) => {
                    prop_assert!(r >= floor, "resumed at {} below the floor {}", r, floor);
                    let want: Vec<_> = reference.range(r + 1..).map(|(i, c)| (*i, c.clone())).collect();
                    prop_assert_eq!(got, want);
                }
                Err(compacted) => {
                    // Entry retention alone bounds this history: its floor is exactly `keep`
                    // entries behind, so every point at or above it resumes.
                    prop_assert_eq!(compacted, floor);
                    prop_assert!(r < compacted, "refused {} at or above the floor {}", r, compacted);
                }
            }
        }
    }
}

/// The fencing rule at a lease's edge: a holder whose lease ran out is refused from the first
/// entry whose clock reaches the expiry, although the sweep has not removed it yet, and the
/// next waiter holds only once the sweep has. So no two holders ever overlap, and the reader's
/// view agrees with apply's.
#[tokio::test]
async fn a_holder_whose_lease_ran_out_is_fenced_before_the_sweep_and_its_successor_only_after() {
    use openraft::storage::RaftStateMachine;

    let dir = tempfile::tempdir().unwrap();
    let mut sm = super::StateMachine::open(dir.path(), &super::SmOptions::default()).unwrap();
    let ns = || "ns".to_string();
    let grant = |ttl_ms| Command::LeaseGrant { ns: ns(), ttl_ms };
    sm.apply(vec![stamped(1, 1_000, vec![grant(100), grant(10_000)])]).await.unwrap();
    let enqueue = |lease| Command::Enqueue {
        ns: ns(),
        queue: Queue::Lock,
        name: "job".into(),
        lease,
        value: "null".into(),
        lock_delay_ms: 0,
    };
    let queued =
        sm.apply(vec![stamped(2, 1_010, vec![enqueue(1)]), stamped(3, 1_020, vec![enqueue(2)])]).await.unwrap();
    assert_eq!(queued[0].results, vec![CmdResult::Queued { token: 2, holder: Some(2) }]);
    assert_eq!(queued[1].results, vec![CmdResult::Queued { token: 3, holder: Some(2) }]);
    let fenced = |index, token| Command::Set {
        ns: ns(),
        key: format!("w{index}"),
        value: "1".into(),
        ttl_ms: None,
        cond: Condition::IfFence { lock: "job".into(), token },
    };
    let reader = sm.reader();
    let holder = || reader.queue("ns", Queue::Lock, "job").unwrap().holder().map(|(t, _)| *t);

    let before = sm.apply(vec![stamped(4, 1_099, vec![fenced(4, 2), fenced(4, 3)])]).await.unwrap();
    assert!(matches!(before[0].results[0], CmdResult::Item(_)), "the holder writes: {before:?}");
    assert_eq!(before[0].results[1], CmdResult::Refused(Refusal::Fenced), "a waiter does not");
    assert_eq!(holder(), Some(2));

    // Lease 1 is due at 1_100; no sweep yet.
    let due = sm.apply(vec![stamped(5, 1_100, vec![fenced(5, 2), fenced(5, 3)])]).await.unwrap();
    assert_eq!(due[0].results, vec![CmdResult::Refused(Refusal::Fenced); 2], "nobody holds until the sweep");
    assert_eq!(holder(), None);

    sm.apply(vec![stamped(6, 1_101, vec![Command::Expire])]).await.unwrap();
    let after = sm.apply(vec![stamped(7, 1_102, vec![fenced(7, 2), fenced(7, 3)])]).await.unwrap();
    assert_eq!(after[0].results[0], CmdResult::Refused(Refusal::Fenced), "the old holder stays fenced");
    assert!(matches!(after[0].results[1], CmdResult::Item(_)), "the next waiter holds: {after:?}");
    assert_eq!(holder(), Some(3));
}

/// A lock taken with a lock delay stays unheld for that long after its holder's lease ends,
/// whether it is revoked or expires; the ticker's next expiry names the delay's end, and the
/// `Expire` at that time hands the lock on. A waiter that never held it starts no delay.
#[tokio::test]
async fn a_lock_delay_keeps_the_lock_unheld_after_its_holders_lease_ends() {
    use openraft::storage::RaftStateMachine;

    let dir = tempfile::tempdir().unwrap();
    let mut sm = super::StateMachine::open(dir.path(), &super::SmOptions::default()).unwrap();
    let ns = || "ns".to_string();
    let grant = Command::LeaseGrant { ns: ns(), ttl_ms: 60_000 };
    sm.apply(vec![stamped(1, 1_000, vec![grant.clone(), grant.clone(), grant])]).await.unwrap();
    let enqueue = |lease, lock_delay_ms| Command::Enqueue {
        ns: ns(),
        queue: Queue::Lock,
        name: "job".into(),
        lease,
        value: "null".into(),
        lock_delay_ms,
    };
    // Lease 3 waits last, with a delay it never gets to start.
    sm.apply(vec![stamped(2, 1_000, vec![enqueue(1, 500)]), stamped(3, 1_000, vec![enqueue(2, 0)])]).await.unwrap();
    sm.apply(vec![stamped(4, 1_000, vec![enqueue(3, 9_000)])]).await.unwrap();
    let reader = sm.reader();
    let holder = || reader.queue("ns", Queue::Lock, "job").unwrap().holder().map(|(t, _)| *t);
    assert_eq!(holder(), Some(2));

    sm.apply(vec![stamped(5, 2_000, vec![Command::LeaseRevoke { ns: ns(), id: 1 }])]).await.unwrap();
    assert_eq!(holder(), None, "the delay after the holder's lease ended");
    assert_eq!(reader.next_expiry(), Some(2_500), "the ticker must end the delay");
    let fenced = |index| Command::Set {
        ns: ns(),
        key: format!("w{index}"),
        value: "1".into(),
        ttl_ms: None,
        cond: Condition::IfFence { lock: "job".into(), token: 3 },
    };
    let during = sm.apply(vec![stamped(6, 2_499, vec![fenced(6)])]).await.unwrap();
    assert_eq!(during[0].results, vec![CmdResult::Refused(Refusal::Fenced)], "nobody holds during the delay");

    sm.apply(vec![stamped(7, 2_500, vec![Command::Expire])]).await.unwrap();
    assert_eq!(holder(), Some(3), "the next waiter holds once the delay is over");
    assert_eq!(reader.next_expiry(), Some(61_000), "the delay is gone; the leases remain");
    // The new holder revokes its own lease: it asked for no delay, so the lock passes at once
    // to lease 3, whose own delay was never started.
    sm.apply(vec![stamped(8, 2_600, vec![Command::LeaseRevoke { ns: ns(), id: 2 }])]).await.unwrap();
    assert_eq!(holder(), Some(4));
}

//! Determinism and semantics of apply, checked with proptest: random command logs are applied
//! to two replicas that split the log into different apply batches (as replicas with different
//! timing do), and to a plain in-memory model. Responses and final state must all agree.
//! `apply` never reads a clock, so the replicas' own wall clocks cannot matter; time enters
//! only through the leader's stamp in each proposal, which the generator varies.

use std::collections::BTreeMap;

use openraft::{CommittedLeaderId, EntryPayload};
use proptest::prelude::*;

use super::apply::{add, Applier};
use crate::command::{CmdResult, Command, Condition, Item, Number, Proposal, Refusal};
use crate::types::{Entry, LogId};

const KEYS: &[&str] = &["a", "b", "c"];

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
    ]
}

fn arb_cmd() -> impl Strategy<Value = Command> {
    let key = proptest::sample::select(KEYS).prop_map(str::to_string);
    let ttl = proptest::option::of(1u64..40);
    prop_oneof![
        4 => (key.clone(), arb_value(), ttl.clone(), arb_cond())
            .prop_map(|(key, value, ttl_ms, cond)| Command::Set { key, value, ttl_ms, cond }),
        2 => (key.clone(), arb_cond()).prop_map(|(key, cond)| Command::Delete { key, cond }),
        3 => (key, prop_oneof![(-2i64..3).prop_map(Number::Int), Just(Number::Int(i64::MAX)), Just(Number::Float(0.5))], ttl)
            .prop_map(|(key, delta, ttl_ms)| Command::Increment { key, delta, ttl_ms }),
        1 => Just(Command::Expire),
    ]
}

/// Proposals with leader stamps that mostly advance but sometimes go back (a new leader with a
/// slower clock): the logical clock must never move backwards.
fn arb_log() -> impl Strategy<Value = Vec<(u64, Vec<Command>)>> {
    proptest::collection::vec((0u64..60, proptest::collection::vec(arb_cmd(), 1..4)), 1..40).prop_map(|steps| {
        let mut t = 1_000u64;
        steps
            .into_iter()
            .map(|(d, cmds)| {
                t = if d < 5 { t.saturating_sub(d * 10) } else { t + d };
                (t, cmds)
            })
            .collect()
    })
}

fn entries(log: &[(u64, Vec<Command>)]) -> Vec<Entry> {
    log.iter()
        .enumerate()
        .map(|(i, (now_ms, cmds))| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
            payload: EntryPayload::Normal(Proposal {
                now_ms: *now_ms,
                cmds: cmds.clone(),
            }),
        })
        .collect()
}

/// Applies `entries` in chunks of the given sizes; returns every command result and the tree.
/// Every raw (key, value) pair of a tree, in order.
type Dump = Vec<(Vec<u8>, Vec<u8>)>;

fn replay(entries: &[Entry], chunks: &[usize]) -> (Vec<CmdResult>, Dump) {
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
        tree.apply_batch(a.finish().unwrap()).unwrap();
        rest = later;
    }
    let dump = tree
        .iter()
        .map(|kv| kv.unwrap())
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    (results, dump)
}

/// The reference semantics, written as plainly as possible.
#[derive(Default)]
struct Model {
    clock: u64,
    items: BTreeMap<String, (String, u64, Option<u64>)>,
}

impl Model {
    fn live(&self, key: &str) -> Option<&(String, u64, Option<u64>)> {
        self.items
            .get(key)
            .filter(|(_, _, exp)| exp.is_none_or(|t| t > self.clock))
    }

    fn holds(&self, cond: &Condition, key: &str) -> Option<Refusal> {
        let cur = self.live(key);
        let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        match cond {
            Condition::None => None,
            Condition::IfAbsent => cur.map(|_| Refusal::KeyExists),
            Condition::IfVersion(v) => (cur.map(|c| c.1) != Some(*v)).then_some(Refusal::VersionMismatch),
            Condition::IfValue(x) => (cur.map(|c| json(&c.0)) != Some(json(x))).then_some(Refusal::ValueMismatch),
        }
    }

    fn item(&self, key: &str) -> CmdResult {
        let (value, version, expires_at) = self.items[key].clone();
        CmdResult::Item(Item {
            key: key.into(),
            value,
            version,
            expires_at,
        })
    }

    fn apply(&mut self, index: u64, now: u64, cmd: &Command) -> CmdResult {
        self.clock = self.clock.max(now);
        match cmd {
            Command::Set {
                key,
                value,
                ttl_ms,
                cond,
            } => {
                if let Some(r) = self.holds(cond, key) {
                    return CmdResult::Refused(r);
                }
                self.items
                    .insert(key.clone(), (value.clone(), index, ttl_ms.map(|t| self.clock + t)));
                self.item(key)
            }
            Command::Delete { key, cond } => {
                if self.live(key).is_none() {
                    return CmdResult::Refused(Refusal::NotFound);
                }
                if let Some(r) = self.holds(cond, key) {
                    return CmdResult::Refused(r);
                }
                self.items.remove(key);
                CmdResult::Deleted { key: key.clone() }
            }
            Command::Increment { key, delta, ttl_ms } => {
                let (cur, exp) = match self.live(key) {
                    None => (Number::Int(0), ttl_ms.map(|t| self.clock + t)),
                    Some((v, _, exp)) => match serde_json::from_str::<serde_json::Value>(v).unwrap() {
                        serde_json::Value::Number(n) => (
                            n.as_i64()
                                .map(Number::Int)
                                .unwrap_or(Number::Float(n.as_f64().unwrap())),
                            *exp,
                        ),
                        _ => return CmdResult::Refused(Refusal::NotANumber),
                    },
                };
                let Some(v) = add(cur, *delta) else {
                    return CmdResult::Refused(Refusal::Overflow);
                };
                self.items.insert(key.clone(), (v, index, exp));
                self.item(key)
            }
            Command::Expire => {
                let clock = self.clock;
                let before = self.items.len();
                self.items.retain(|_, (_, _, exp)| exp.is_none_or(|t| t > clock));
                CmdResult::Expired {
                    count: (before - self.items.len()) as u64,
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn replicas_agree_with_each_other_and_the_model(log in arb_log(), chunks in proptest::collection::vec(1usize..6, 1..5)) {
        let es = entries(&log);
        let (r1, d1) = replay(&es, &[1]);
        let (r2, d2) = replay(&es, &chunks);
        prop_assert_eq!(&r1, &r2);
        prop_assert_eq!(d1, d2);

        let mut m = Model::default();
        let mut expect = Vec::new();
        for (i, (now, cmds)) in log.iter().enumerate() {
            for c in cmds {
                expect.push(m.apply(i as u64 + 1, *now, c));
            }
        }
        prop_assert_eq!(r1, expect);
    }
}

#[test]
fn integer_increments_are_checked_and_floats_must_stay_finite() {
    assert_eq!(add(Number::Int(i64::MAX), Number::Int(1)), None);
    assert_eq!(add(Number::Int(2), Number::Int(-5)).as_deref(), Some("-3"));
    assert_eq!(add(Number::Int(1), Number::Float(0.5)).as_deref(), Some("1.5"));
    assert_eq!(add(Number::Float(f64::MAX), Number::Float(f64::MAX)), None);
}

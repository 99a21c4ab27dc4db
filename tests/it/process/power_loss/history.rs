//! The power-loss test's model of what a write did and what state it allows afterwards: the
//! keys of the workload, each write's outcome as its client saw it, and the check of a state
//! read after the power came back against the writes of the round.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

pub fn owned_key(writer: usize, k: usize) -> String {
    format!("pl-s-{writer}-{k}")
}

/// Counters take only increments; every other key of the workload takes sets and deletes.
const COUNTER_PREFIX: &str = "pl-c-";

pub fn counter_key(k: usize) -> String {
    format!("{COUNTER_PREFIX}{k}")
}

#[derive(Clone, Debug)]
pub enum Kind {
    Set(Value),
    Delete,
    Increment,
}

/// What a write did, as its client saw it.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// 200, or a DELETE's 404 (the key was absent at that point of the log: still a committed
    /// answer). The version and value of the item a set or an increment returned.
    Acked(Option<(Value, u64)>),
    /// Anything else, a transport error included: it may take effect, even after later writes,
    /// or never. Every other status is counted here too, which can only make the check more
    /// permissive for that one write; with no election before the cut, the unknown writes are
    /// the ones in flight when the power went.
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub key: String,
    pub kind: Kind,
    pub outcome: Outcome,
}

/// Every key under the test's prefix: value and version.
pub type State = BTreeMap<String, (Value, u64)>;

/// Every write of the test, and what the last check saw.
#[derive(Default)]
pub struct History {
    /// The state every key started this round in: what the last check saw (nothing at first).
    /// After the first strong read of a new term nothing older can still take effect: the
    /// leader's first entry of the term commits or replaces whatever was in flight.
    settled: State,
    /// This round's writes; those on one owned key in the order its writer issued them.
    pub ops: Vec<Op>,
}

impl History {
    pub fn summary(&self) -> String {
        let acked: Vec<&Op> = self.ops.iter().filter(|o| matches!(o.outcome, Outcome::Acked(_))).collect();
        let count = |f: fn(&Kind) -> bool| acked.iter().filter(|o| f(&o.kind)).count();
        let unknown: Vec<&str> = self
            .ops
            .iter()
            .filter_map(|o| match &o.outcome {
                Outcome::Unknown(why) => Some(why.as_str()),
                Outcome::Acked(_) => None,
            })
            .collect();
        format!(
            "{} writes, {} acknowledged ({} sets, {} deletes, {} increments), {} unknown: {unknown:?}",
            self.ops.len(),
            acked.len(),
            count(|k| matches!(k, Kind::Set(_))),
            count(|k| matches!(k, Kind::Delete)),
            count(|k| matches!(k, Kind::Increment)),
            unknown.len()
        )
    }

    /// Every key whose state `state` cannot be explained by this round's writes: a lost
    /// acknowledged write, or a value nobody wrote.
    pub fn check(&self, state: &State) -> Vec<String> {
        let keys: BTreeSet<&String> =
            self.settled.keys().chain(state.keys()).chain(self.ops.iter().map(|o| &o.key)).collect();
        keys.into_iter()
            .filter_map(|key| {
                let ops: Vec<&Op> = self.ops.iter().filter(|o| &o.key == key).collect();
                let (before, after) = (self.settled.get(key), state.get(key));
                let checked = if key.starts_with(COUNTER_PREFIX) {
                    check_counter(before, &ops, after)
                } else {
                    check_owned(before, &ops, after)
                };
                checked.err().map(|why| format!("{key}: {why}"))
            })
            .collect()
    }

    pub fn settle(&mut self, state: State) {
        self.settled = state;
        self.ops.clear();
    }
}

fn unknown<'a>(ops: &'a [&'a Op]) -> impl Iterator<Item = &'a Op> {
    ops.iter().copied().filter(|o| matches!(o.outcome, Outcome::Unknown(_)))
}

pub fn show(item: Option<&(Value, u64)>) -> String {
    match item {
        None => "absent".into(),
        Some((v, version)) => {
            let text = v.to_string();
            format!("{} at version {version}", &text[..text.len().min(24)])
        }
    }
}

/// An owned key is as its last acknowledged write left it (a set: that value at that version;
/// a delete: absent), or as the round started if none was acknowledged, unless an unknown write
/// on it took effect later: a set whose value it holds at a later version, or a delete.
fn check_owned(before: Option<&(Value, u64)>, ops: &[&Op], after: Option<&(Value, u64)>) -> Result<(), String> {
    let last_acked = ops.iter().rev().find_map(|o| match (&o.kind, &o.outcome) {
        (Kind::Set(_), Outcome::Acked(item)) => Some(item.clone()),
        (Kind::Delete, Outcome::Acked(_)) => Some(None),
        _ => None,
    });
    let expected = last_acked.unwrap_or_else(|| before.cloned());
    if after == expected.as_ref() {
        return Ok(());
    }
    let explained = match after {
        None => unknown(ops).any(|o| matches!(o.kind, Kind::Delete)),
        Some((value, version)) => {
            unknown(ops).any(|o| matches!(&o.kind, Kind::Set(v) if v == value))
                && expected.as_ref().is_none_or(|(_, acked)| version > acked)
        }
    };
    if explained {
        return Ok(());
    }
    Err(format!("its last acknowledged write left it {}, found {}", show(expected.as_ref()), show(after)))
}

/// A counter holds every acknowledged increment exactly once: it is at the value and version
/// the latest acknowledged increment returned (or where the round started), or above it by at
/// most the number of unknown increments, at a later version.
fn check_counter(before: Option<&(Value, u64)>, ops: &[&Op], after: Option<&(Value, u64)>) -> Result<(), String> {
    let number = |v: &Value| v.as_i64().unwrap_or_else(|| panic!("counter value {v} is not an integer"));
    let at = |item: Option<&(Value, u64)>| item.map_or((0, 0), |(v, version)| (number(v), *version));
    let latest_acked = ops
        .iter()
        .filter_map(|o| match &o.outcome {
            Outcome::Acked(Some((v, version))) => Some((number(v), *version)),
            _ => None,
        })
        .max_by_key(|(_, version)| *version);
    let (floor, floor_version) = latest_acked.unwrap_or_else(|| at(before));
    let unknown = unknown(ops).count() as i64;
    let (value, version) = at(after);
    let ok = if version == floor_version {
        value == floor
    } else {
        version > floor_version && value > floor && value - floor <= unknown
    };
    if ok {
        return Ok(());
    }
    Err(format!(
        "the latest acknowledged increment left it at {floor} (version {floor_version}), {unknown} unknown increments; found {value} (version {version})"
    ))
}

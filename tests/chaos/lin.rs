//! Linearizability of a recorded history, key by key: turns `Record`s into checker events
//! (a key with any `incr` is a counter, otherwise a register), runs the checker, and explains
//! a violation with the operations around the point where the search got stuck.
//!
//! Which records count: `fail` operations did not happen and are left out (if one did happen,
//! the reads that see it make the history non-linearizable); reads that are not `ok` observed
//! nothing and are left out; `info` writes, CASes and increments keep an open-ended return.

use std::collections::BTreeMap;

use serde_json::Value;

use super::checker::{check, Counter, CounterOp, Event, Model, Register, RegisterOp, Verdict};
use super::history::{OpKind, Record, Status};

#[derive(Debug, Clone)]
pub enum KeyOutcome {
    Linearizable,
    Violation(String),
    /// The search exhausted its budget: reported, and never counted as a pass.
    Unknown(String),
}

#[derive(Debug, Clone)]
pub struct KeyVerdict {
    pub key: String,
    pub model: &'static str,
    /// Records for the key, and how many of them the checker used.
    pub records: usize,
    pub checked: usize,
    pub outcome: KeyOutcome,
}

/// Checks every key of `records`; `Err` only for records the checker cannot interpret.
pub fn check_by_key(records: &[Record], budget: u64) -> Result<Vec<KeyVerdict>, String> {
    let mut by_key: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_key.entry(r.key.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (key, recs) in by_key {
        let is_counter = recs.iter().any(|r| r.op == OpKind::Incr);
        let verdict = if is_counter {
            let (events, used) = counter_events(&recs)?;
            judge(&Counter, "counter", key, &recs, &events, &used, budget)
        } else {
            let (events, used) = register_events(&recs)?;
            judge(&Register, "register", key, &recs, &events, &used, budget)
        };
        out.push(verdict);
    }
    Ok(out)
}

fn judge<M: Model>(
    model: &M,
    name: &'static str,
    key: &str,
    recs: &[&Record],
    events: &[Event<M::Op>],
    used: &[usize],
    budget: u64,
) -> KeyVerdict {
    let outcome = match check(model, events, budget) {
        Verdict::Linearizable => KeyOutcome::Linearizable,
        Verdict::Unknown { steps } => {
            KeyOutcome::Unknown(format!("search gave up after {steps} steps on {} operations", events.len()))
        }
        Verdict::Violation(f) => {
            let line = |i: usize| serde_json::to_string(recs[used[i]]).unwrap_or_default();
            let mut text = format!(
                "no linearization exists; the longest linearizable prefix has {} of {} operations and ends in state {:?}\n",
                f.prefix.len(),
                events.len(),
                f.state
            );
            text.push_str("  last operations of that prefix (in linearization order):\n");
            for &i in f.prefix.iter().rev().take(6).collect::<Vec<_>>().iter().rev() {
                text.push_str(&format!("    {}\n", line(*i)));
            }
            if let Some(stuck) = f.stuck {
                text.push_str(&format!(
                    "  then this operation returned before any remaining operation could explain it:\n    {}\n",
                    line(stuck)
                ));
                let stuck_ret = events[stuck].ret.unwrap_or(u64::MAX);
                let pending: Vec<usize> = (0..events.len())
                    .filter(|i| !f.prefix.contains(i) && *i != stuck && events[*i].call <= stuck_ret)
                    .take(8)
                    .collect();
                if !pending.is_empty() {
                    text.push_str("  operations not yet linearized that had been called by then:\n");
                    for i in pending {
                        text.push_str(&format!("    {}\n", line(i)));
                    }
                }
            }
            KeyOutcome::Violation(text)
        }
    };
    KeyVerdict { key: key.to_string(), model: name, records: recs.len(), checked: events.len(), outcome }
}

fn int(v: &Value, what: &str, r: &Record) -> Result<i64, String> {
    v.as_i64().ok_or_else(|| format!("{what} is not an integer in {}", serde_json::to_string(r).unwrap_or_default()))
}

fn ret_of(r: &Record) -> Option<u64> {
    (r.status == Status::Ok).then_some(r.ret)
}

/// Events for a register key, and for each event the index of its record in `recs`.
fn register_events(recs: &[&Record]) -> Result<(Vec<Event<RegisterOp>>, Vec<usize>), String> {
    let mut events = Vec::new();
    let mut used = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        if r.status == Status::Fail || (r.op == OpKind::Read && r.status != Status::Ok) {
            continue;
        }
        let op = match r.op {
            OpKind::Read => RegisterOp::Read(if r.res.is_null() { None } else { Some(int(&r.res, "res", r)?) }),
            OpKind::Write => RegisterOp::Write(int(&r.arg, "arg", r)?),
            OpKind::Cas => {
                let pair = r.arg.as_array().filter(|a| a.len() == 2).ok_or("cas arg is not [old, new]")?;
                let outcome = match r.status {
                    Status::Ok => Some(r.res.as_bool().ok_or("cas res is not a bool")?),
                    _ => None,
                };
                RegisterOp::Cas { old: int(&pair[0], "cas old", r)?, new: int(&pair[1], "cas new", r)?, outcome }
            }
            OpKind::Incr => return Err(format!("incr on register key {}", r.key)),
            _ => return Err(format!("{:?} on register key {}", r.op, r.key)),
        };
        events.push(Event { op, call: r.call, ret: ret_of(r) });
        used.push(i);
    }
    Ok((events, used))
}

fn counter_events(recs: &[&Record]) -> Result<(Vec<Event<CounterOp>>, Vec<usize>), String> {
    let mut events = Vec::new();
    let mut used = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        if r.status == Status::Fail || (r.op == OpKind::Read && r.status != Status::Ok) {
            continue;
        }
        let op = match r.op {
            // An absent counter reads as 0: counter keys are only ever incremented.
            OpKind::Read => CounterOp::Read(if r.res.is_null() { 0 } else { int(&r.res, "res", r)? }),
            OpKind::Incr => CounterOp::Incr {
                delta: int(&r.arg, "arg", r)?,
                res: match r.status {
                    Status::Ok => Some(int(&r.res, "res", r)?),
                    _ => None,
                },
            },
            _ => return Err(format!("{:?} on counter key {}", r.op, r.key)),
        };
        events.push(Event { op, call: r.call, ret: ret_of(r) });
        used.push(i);
    }
    Ok((events, used))
}

//! The linearizability checker: Wing & Gong's backtracking search with Lowe's memoisation of
//! (linearized set, state) pairs, the algorithm porcupine uses. It checks one key's history
//! at a time (per-key partitioning is sound because keys are independent objects).
//!
//! An operation whose outcome is unknown (`info`) has no return event: its return is open-ended,
//! so it may take effect at any point after its call or never (placed after every other
//! operation, where the models accept it in any state). It is never assumed absent.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification: what an operation may observe in a state, and the next state.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Op: Debug;
    fn init(&self) -> Self::State;
    /// The state after `op` takes effect in `state`, or `None` when `op`'s recorded output is
    /// impossible in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One operation of a history: `call` and `ret` in any monotonic unit; `ret: None` is unknown.
#[derive(Debug, Clone)]
pub struct Event<O> {
    pub op: O,
    pub call: u64,
    pub ret: Option<u64>,
}

#[derive(Debug)]
pub enum Verdict<S> {
    Linearizable,
    /// No linearization exists.
    Violation(Failure<S>),
    /// The search gave up after its step budget: neither a pass nor a proof of a bug.
    Unknown {
        steps: u64,
    },
}

impl<S> Verdict<S> {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// What the deepest partial linearization looked like when the search failed.
#[derive(Debug)]
pub struct Failure<S> {
    /// Indices (into the checked slice) of the longest linearizable prefix found, in order.
    pub prefix: Vec<usize>,
    /// The state after that prefix.
    pub state: S,
    /// The operation whose return was reached before it could be linearized after that prefix.
    pub stuck: Option<usize>,
}

/// Default step budget: generous for the key-rotated histories the workloads produce
/// (a few hundred operations per key), small enough that a pathological history ends.
pub const DEFAULT_BUDGET: u64 = 20_000_000;

const NIL: usize = usize::MAX;

/// A doubly linked list of call/return entries sorted by time, with O(1) lift and unlift.
struct Entries {
    /// `op[e]`: the operation of entry `e`.
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// For a call entry, its return entry.
    partner: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The sentinel head (index `len`).
    head: usize,
}

impl Entries {
    fn new<O>(events: &[Event<O>]) -> Self {
        // (time, kind, op): calls sort before returns at equal times, the permissive reading of
        // touching intervals (they are treated as concurrent).
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(events.len() * 2);
        for (i, e) in events.iter().enumerate() {
            order.push((e.call, 0, i));
            order.push((e.ret.unwrap_or(u64::MAX), 1, i));
        }
        order.sort_unstable();
        let len = order.len();
        let mut entries = Entries {
            op: vec![0; len],
            is_call: vec![false; len],
            partner: vec![NIL; len],
            next: vec![NIL; len + 1],
            prev: vec![NIL; len + 1],
            head: len,
        };
        let mut call_entry = vec![NIL; events.len()];
        for (pos, &(_, kind, op)) in order.iter().enumerate() {
            entries.op[pos] = op;
            entries.is_call[pos] = kind == 0;
            if kind == 0 {
                call_entry[op] = pos;
            } else {
                entries.partner[call_entry[op]] = pos;
            }
        }
        let mut last = entries.head;
        for pos in 0..len {
            entries.next[last] = pos;
            entries.prev[pos] = last;
            last = pos;
        }
        entries.next[last] = NIL;
        entries
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    /// Removes a call entry and its return entry from the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.partner[call]);
    }

    /// Undoes `lift` (in reverse order, so the saved neighbours are valid again).
    fn unlift(&mut self, call: usize) {
        self.relink(self.partner[call]);
        self.relink(call);
    }
}

/// A fixed-size bit set, hashable, for the memo of linearized operations.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Checks one object's history against `model`, giving up after `budget` search steps.
pub fn check<M: Model>(model: &M, events: &[Event<M::Op>], budget: u64) -> Verdict<M::State> {
    let mut list = Entries::new(events);
    let mut linearized = Bits::new(events.len());
    let mut memo: HashSet<(Bits, M::State)> = HashSet::new();
    // The call entries linearized so far, with the state before each.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut best: (Vec<usize>, M::State, Option<usize>) = (Vec::new(), state.clone(), None);
    let mut steps = 0u64;
    let mut entry = list.next[list.head];
    while entry != NIL {
        steps += 1;
        if steps > budget {
            return Verdict::Unknown { steps };
        }
        let op = list.op[entry];
        if list.is_call[entry] {
            if let Some(next_state) = model.step(&state, &events[op].op) {
                let mut next_lin = linearized.clone();
                next_lin.set(op);
                if memo.insert((next_lin.clone(), next_state.clone())) {
                    stack.push((entry, state));
                    state = next_state;
                    linearized = next_lin;
                    list.lift(entry);
                    if stack.len() > best.0.len() {
                        best = (stack.iter().map(|(e, _)| list.op[*e]).collect(), state.clone(), None);
                    }
                    entry = list.next[list.head];
                    continue;
                }
            }
            entry = list.next[entry];
        } else {
            // `op` returned before it was linearized: undo the last choice and try the next.
            if stack.len() == best.0.len() && best.2.is_none() {
                best.2 = Some(op);
            }
            let Some((call, before)) = stack.pop() else {
                return Verdict::Violation(Failure { prefix: best.0, state: best.1, stuck: best.2 });
            };
            linearized.clear(list.op[call]);
            state = before;
            list.unlift(call);
            entry = list.next[call];
        }
    }
    Verdict::Linearizable
}

/// A read/write/compare-and-set register holding an integer, or absent (`None`).
pub struct Register;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// A read that returned this value (`None`: not found).
    Read(Option<i64>),
    /// A write of this value (acknowledged or unknown: either way it sets the value).
    Write(i64),
    /// `cas(old, new)` with its outcome: `Some(true)` applied, `Some(false)` refused,
    /// `None` unknown (applies exactly when the value equals `old` at its linearization point).
    Cas { old: i64, new: i64, outcome: Option<bool> },
}

impl Model for Register {
    type State = Option<i64>;
    type Op = RegisterOp;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, op: &RegisterOp) -> Option<Option<i64>> {
        match *op {
            RegisterOp::Read(v) => (v == *state).then_some(*state),
            RegisterOp::Write(v) => Some(Some(v)),
            RegisterOp::Cas { old, new, outcome } => {
                let matches = *state == Some(old);
                match outcome {
                    Some(true) => matches.then_some(Some(new)),
                    Some(false) => (!matches).then_some(*state),
                    None => Some(if matches { Some(new) } else { *state }),
                }
            }
        }
    }
}

/// A counter that starts at 0 (an absent key reads as 0) and only grows by increments.
pub struct Counter;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterOp {
    Read(i64),
    /// An increment by `delta` that returned the new value (`None`: unknown outcome).
    Incr {
        delta: i64,
        res: Option<i64>,
    },
}

impl Model for Counter {
    type State = i64;
    type Op = CounterOp;

    fn init(&self) -> i64 {
        0
    }

    fn step(&self, state: &i64, op: &CounterOp) -> Option<i64> {
        match *op {
            CounterOp::Read(v) => (v == *state).then_some(*state),
            CounterOp::Incr { delta, res } => {
                let next = state.checked_add(delta)?;
                match res {
                    Some(r) => (r == next).then_some(next),
                    None => Some(next),
                }
            }
        }
    }
}

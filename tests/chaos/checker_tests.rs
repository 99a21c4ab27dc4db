//! The checker must reject known-bad histories (stale read, lost acknowledged write, a CAS
//! that succeeded twice, a counter that double-counts) and accept known-good ones, including
//! ones with unknown (`info`) operations; and, as properties, accept every history produced
//! by a real atomic register and reject every corrupted read in a sequential history.

use proptest::prelude::*;

use super::checker::{check, Counter, CounterOp, Event, Register, RegisterOp, Verdict, DEFAULT_BUDGET};

fn ev<O>(op: O, call: u64, ret: u64) -> Event<O> {
    Event { op, call, ret: Some(ret) }
}

fn info<O>(op: O, call: u64) -> Event<O> {
    Event { op, call, ret: None }
}

fn register(history: &[Event<RegisterOp>]) -> Verdict<Option<i64>> {
    check(&Register, history, DEFAULT_BUDGET)
}

use RegisterOp::{Cas, Read, Write};

fn cas(old: i64, new: i64, outcome: Option<bool>) -> RegisterOp {
    Cas { old, new, outcome }
}

#[test]
fn sequential_writes_and_reads_are_linearizable() {
    let h = [
        ev(Read(None), 0, 1),
        ev(Write(1), 2, 3),
        ev(Read(Some(1)), 4, 5),
        ev(Write(2), 6, 7),
        ev(Read(Some(2)), 8, 9),
    ];
    assert!(register(&h).is_linearizable());
}

#[test]
fn stale_read_after_a_completed_write_is_rejected() {
    let h = [ev(Write(1), 0, 10), ev(Write(2), 20, 30), ev(Read(Some(1)), 40, 50)];
    match register(&h) {
        Verdict::Violation(f) => {
            assert_eq!(f.prefix, vec![0, 1], "both writes linearize, then the read cannot: {f:?}");
            assert_eq!(f.stuck, Some(2), "{f:?}");
        }
        other => panic!("a stale read must be rejected, got {other:?}"),
    }
}

#[test]
fn read_concurrent_with_a_write_may_see_either_value() {
    let old = [ev(Write(1), 0, 10), ev(Write(2), 20, 40), ev(Read(Some(1)), 25, 30)];
    let new = [ev(Write(1), 0, 10), ev(Write(2), 20, 40), ev(Read(Some(2)), 25, 30)];
    assert!(register(&old).is_linearizable());
    assert!(register(&new).is_linearizable());
}

#[test]
fn lost_acknowledged_write_is_rejected() {
    // The write of 7 was acknowledged, yet a later read finds the key absent.
    let h = [ev(Write(7), 0, 10), ev(Read(None), 20, 30)];
    assert!(matches!(register(&h), Verdict::Violation(_)));
    // Also when a later read returns the value from before the acknowledged write.
    let h = [ev(Write(1), 0, 10), ev(Write(2), 20, 30), ev(Read(Some(1)), 100, 110)];
    assert!(matches!(register(&h), Verdict::Violation(_)));
}

#[test]
fn cas_succeeding_twice_from_the_same_value_is_rejected() {
    let h = [ev(Write(0), 0, 10), ev(cas(0, 1, Some(true)), 20, 40), ev(cas(0, 2, Some(true)), 21, 41)];
    assert!(matches!(register(&h), Verdict::Violation(_)));
    // One of them succeeding and the other refused is fine.
    let h = [
        ev(Write(0), 0, 10),
        ev(cas(0, 1, Some(true)), 20, 40),
        ev(cas(0, 2, Some(false)), 21, 41),
        ev(Read(Some(1)), 50, 60),
    ];
    assert!(register(&h).is_linearizable());
}

#[test]
fn refused_cas_must_see_a_different_value() {
    let h = [ev(Write(3), 0, 10), ev(cas(3, 4, Some(false)), 20, 30)];
    assert!(matches!(register(&h), Verdict::Violation(_)));
    let absent = [ev(cas(3, 4, Some(false)), 0, 1)];
    assert!(register(&absent).is_linearizable());
}

#[test]
fn unknown_write_may_take_effect_long_after_its_call() {
    // The write of 5 timed out; a read much later sees it, and a read before that did not.
    let h = [
        ev(Write(1), 0, 10),
        info(Write(5), 20),
        ev(Read(Some(1)), 100, 110),
        ev(Read(Some(5)), 200, 210),
        ev(Read(Some(5)), 300, 310),
    ];
    assert!(register(&h).is_linearizable());
}

#[test]
fn unknown_write_may_never_take_effect() {
    let h = [ev(Write(1), 0, 10), info(Write(5), 20), ev(Read(Some(1)), 100, 110)];
    assert!(register(&h).is_linearizable());
}

#[test]
fn unknown_write_cannot_take_effect_before_its_call() {
    let h = [ev(Read(Some(5)), 0, 10), info(Write(5), 20)];
    assert!(matches!(register(&h), Verdict::Violation(_)));
}

#[test]
fn unknown_write_takes_effect_at_most_once() {
    // 5 (unknown) appears, is overwritten by an acknowledged 6, and cannot come back.
    let h = [info(Write(5), 0), ev(Read(Some(5)), 10, 20), ev(Write(6), 30, 40), ev(Read(Some(5)), 50, 60)];
    assert!(matches!(register(&h), Verdict::Violation(_)));
}

#[test]
fn unknown_cas_is_judged_against_the_value_it_meets() {
    let applied = [ev(Write(1), 0, 10), info(cas(1, 2, None), 20), ev(Read(Some(2)), 30, 40)];
    assert!(register(&applied).is_linearizable());
    // The unknown CAS expected 9, so it can never have produced 2.
    let impossible = [ev(Write(1), 0, 10), info(cas(9, 2, None), 20), ev(Read(Some(2)), 30, 40)];
    assert!(matches!(register(&impossible), Verdict::Violation(_)));
}

#[test]
fn counter_within_bounds_with_unknown_increments_is_accepted() {
    let h = [
        ev(CounterOp::Incr { delta: 1, res: Some(1) }, 0, 10),
        info(CounterOp::Incr { delta: 1, res: None }, 20),
        ev(CounterOp::Read(2), 30, 40),
        ev(CounterOp::Incr { delta: 1, res: Some(3) }, 50, 60),
    ];
    assert!(check(&Counter, &h, DEFAULT_BUDGET).is_linearizable());
}

#[test]
fn counter_increment_counted_twice_is_rejected() {
    let h =
        [ev(CounterOp::Incr { delta: 1, res: Some(1) }, 0, 10), ev(CounterOp::Incr { delta: 1, res: Some(1) }, 5, 15)];
    assert!(matches!(check(&Counter, &h, DEFAULT_BUDGET), Verdict::Violation(_)));
    // A read below an acknowledged increment that completed before it: lost increment.
    let h = [ev(CounterOp::Incr { delta: 1, res: Some(1) }, 0, 10), ev(CounterOp::Read(0), 20, 30)];
    assert!(matches!(check(&Counter, &h, DEFAULT_BUDGET), Verdict::Violation(_)));
}

#[test]
fn search_budget_exhaustion_is_unknown_not_a_pass() {
    let h: Vec<Event<RegisterOp>> = (0..12).map(|i| ev(Write(i), 0, 100)).collect();
    let mut h = h;
    h.push(ev(Read(Some(99)), 200, 210));
    assert!(matches!(check(&Register, &h, 50), Verdict::Unknown { .. }));
}

/// A register history produced by a real atomic register: each op takes effect at a random
/// point inside its interval; some writes and CASes lose their reply (unknown), and those
/// take effect or not at random. Reads, being harmless, are never unknown here.
fn atomic_register_history() -> impl Strategy<Value = Vec<Event<RegisterOp>>> {
    let op = (0u8..3, 0i64..3, 0i64..3, 0u64..50, 1u64..40, 0u64..40, any::<bool>(), any::<bool>());
    prop::collection::vec(op, 1..40).prop_map(|ops| {
        // (linearization point, index) decides the effect order.
        let mut planned: Vec<(u64, usize)> = Vec::new();
        let mut shapes = Vec::new();
        let mut t = 0u64;
        for (i, (kind, a, b, gap, len, offset, lost, applies)) in ops.into_iter().enumerate() {
            t += gap;
            let (call, ret) = (t, t + len);
            let point = call + offset.min(len);
            let lost = lost && kind != 0;
            // A lost op that does not apply is placed after everything (never takes effect).
            let point = if lost && !applies { u64::MAX } else { point };
            planned.push((point, i));
            shapes.push((kind, a, b, call, ret, lost));
        }
        planned.sort_unstable();
        let mut value: Option<i64> = None;
        let mut out: Vec<Option<Event<RegisterOp>>> = vec![None; shapes.len()];
        for (point, i) in planned {
            let (kind, a, b, call, ret, lost) = shapes[i];
            let effect = point != u64::MAX;
            let op = match kind {
                0 => Read(value),
                1 => {
                    if effect {
                        value = Some(a);
                    }
                    Write(a)
                }
                _ => {
                    let matched = value == Some(a);
                    if effect && matched {
                        value = Some(b);
                    }
                    Cas { old: a, new: b, outcome: (!lost).then_some(matched) }
                }
            };
            out[i] = Some(Event { op, call, ret: (!lost).then_some(ret) });
        }
        out.into_iter().map(|e| e.expect("every op planned")).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_atomic_register_history_is_accepted(h in atomic_register_history()) {
        let verdict = register(&h);
        prop_assert!(verdict.is_linearizable(), "{verdict:?} for {h:?}");
    }

    #[test]
    fn a_corrupted_read_in_a_sequential_history_is_rejected(
        ops in prop::collection::vec((0u8..3, 0i64..4, 0i64..4), 1..30),
        pick in any::<prop::sample::Index>(),
        wrong in 0i64..4,
    ) {
        // Sequential: op i occupies [10i, 10i+5], so exactly one order is possible.
        let mut value: Option<i64> = None;
        let mut h = Vec::new();
        for (i, (kind, a, b)) in ops.into_iter().enumerate() {
            let op = match kind {
                0 => Read(value),
                1 => { value = Some(a); Write(a) }
                _ => {
                    let ok = value == Some(a);
                    if ok { value = Some(b); }
                    Cas { old: a, new: b, outcome: Some(ok) }
                }
            };
            h.push(ev(op, 10 * i as u64, 10 * i as u64 + 5));
        }
        h.push(ev(Read(value), 10_000, 10_005));
        prop_assert!(register(&h).is_linearizable());
        let reads: Vec<usize> = (0..h.len()).filter(|&i| matches!(h[i].op, Read(_))).collect();
        let i = reads[pick.index(reads.len())];
        let Read(seen) = h[i].op.clone() else { unreachable!() };
        let corrupt = if seen == Some(wrong) { None } else { Some(wrong) };
        h[i].op = Read(corrupt);
        prop_assert!(matches!(register(&h), Verdict::Violation(_)), "corrupted read {i} accepted: {h:?}");
    }
}

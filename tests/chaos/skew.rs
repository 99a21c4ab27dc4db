//! The clock fault, and the skew bounds the TTL checks allow for.
//!
//! A clock step shifts one node's wall clock (the leader, or a random node, as the step's
//! `pick` says) through the test clock (`src/test_clock.rs`): the harness rewrites the node's
//! offset file, which the node reads every 50 ms. The shape comes from `pick` too: a jump
//! forward or back by 0.5–5 s, held for the step's hold, or a drift of 200–1000 ms per second,
//! fast or slow, written in 100 ms steps. The heal sets the offset back to 0, itself a jump
//! back (or forward). Every offset written is recorded with the wall time just before the
//! write, and the step polls the cluster's leader every 100 ms to note whether the shifted
//! node led at any moment of the fault (or no leader could be seen).
//!
//! Why it matters only on a leader: Cairn's TTLs run on a replicated logical clock, the
//! maximum of the leaders' stamps on their proposals, and only the leader's expiry ticker
//! compares it with a wall clock. So [`Skew`] counts only the offsets of steps whose node may
//! have led; a follower's shifted clock must change nothing, and the TTL checks run at full
//! strength against it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::history::wall_ms;
use super::nemesis::{FaultEvent, Nemesis};
use super::plan::{FaultKind, FaultStep, Rng};

/// How long after an offset file changes the node may still use the old offset: its 50 ms
/// poll, plus scheduling on a loaded machine.
pub const PICKUP_MS: u64 = 500;
/// Pace of the step's drift writes and leader polls.
const TICK: Duration = Duration::from_millis(100);

/// One clock step's offsets on one node: `(wall ms just before the write, offset ms)`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ClockTrace {
    pub node: u64,
    /// The node was seen leading, or no leader could be seen, at some poll during the step.
    pub led: bool,
    pub sets: Vec<(u64, i64)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// Offset set once, for the whole hold.
    Jump(i64),
    /// Offset grows by this many ms per second of the hold.
    Drift(i64),
}

impl Shape {
    fn from_pick(pick: u64) -> Shape {
        let size = (pick >> 8) as i64;
        let jump = 500 + size % 4_501;
        let rate = 200 + size % 801;
        match (pick >> 1) % 4 {
            0 => Shape::Jump(jump),
            1 => Shape::Jump(-jump),
            2 => Shape::Drift(rate),
            _ => Shape::Drift(-rate),
        }
    }

    fn offset_after(self, elapsed: Duration) -> i64 {
        match self {
            Shape::Jump(ms) => ms,
            Shape::Drift(rate) => rate * elapsed.as_millis() as i64 / 1_000,
        }
    }

    fn describe(self) -> String {
        match self {
            Shape::Jump(ms) if ms > 0 => format!("jumps {ms} ms forward"),
            Shape::Jump(ms) => format!("jumps {} ms back", -ms),
            Shape::Drift(rate) if rate > 0 => format!("runs fast by {rate} ms per second"),
            Shape::Drift(rate) => format!("runs slow by {} ms per second", -rate),
        }
    }
}

/// Runs one clock step; see the module comment.
pub async fn step(nem: &mut Nemesis<'_>, step: &FaultStep) -> Result<FaultEvent, String> {
    let mut event = FaultEvent::new(FaultKind::Clock, nem.clock.now_ns(), wall_ms());
    let ids = nem.cluster.ids();
    let random = ids[Rng::new(step.pick).below(ids.len() as u64) as usize];
    let (node, why) =
        if step.pick & 1 == 0 { nem.leader_or(random).await } else { (random, format!("random node {random}")) };
    let shape = Shape::from_pick(step.pick);
    let mut trace = ClockTrace { node, led: false, sets: Vec::new() };
    println!(
        "chaos: +{:>6.1}s inject clock on [{node}] for {} ms: its clock {} ({why})",
        event.start_ns as f64 / 1e9,
        step.hold_ms,
        shape.describe()
    );
    let began = Instant::now();
    let hold = Duration::from_millis(step.hold_ms);
    let mut written = None;
    let outcome = loop {
        let elapsed = began.elapsed().min(hold);
        let offset = shape.offset_after(elapsed);
        if written != Some(offset) {
            trace.sets.push((wall_ms(), offset));
            if let Err(e) = nem.cluster.set_clock_offset(node, offset) {
                break Err(e);
            }
            written = Some(offset);
        }
        let leader = nem.cluster.current_leader(&nem.http, Instant::now() + Duration::from_secs(1)).await;
        if leader.is_none_or(|l| l == node) && !trace.led {
            trace.led = true;
            let seen = leader.map_or("no leader could be seen".to_string(), |l| format!("node {l} leads"));
            nem.milestone(&mut event, format!("{seen} while node {node}'s clock is off by {offset} ms"));
        }
        if elapsed >= hold {
            break Ok(());
        }
        tokio::time::sleep(TICK.min(hold - elapsed)).await;
    };
    // Healed even when a write failed, so no later step runs on a shifted clock.
    trace.sets.push((wall_ms(), 0));
    let healed = nem.cluster.set_clock_offset(node, 0);
    let peak = trace.sets.iter().map(|s| s.1).max_by_key(|o| o.abs()).unwrap_or(0);
    event.targets = vec![node];
    event.note = format!("node {node}'s clock {}, peak offset {peak} ms; {why}", shape.describe());
    if !trace.led {
        event.note.push_str("; it never led");
    }
    event.clock = Some(trace);
    event.end_ns = nem.clock.now_ns();
    event.end_wall_ms = wall_ms();
    outcome.and(healed)?;
    println!("chaos: +{:>6.1}s healed clock (node {node} back on the true time)", event.end_ns as f64 / 1e9);
    Ok(event)
}

/// An offset in effect on a node that may have led, from `from` until `to` (wall ms; `to`
/// already includes the pick-up delay).
#[derive(Clone, Copy, Debug)]
struct Segment {
    from: u64,
    to: u64,
    offset: i64,
}

/// The clock skew a run's TTL checks must allow for: the offsets of every clock step whose
/// node may have led. Empty for runs without clock faults (then both bounds are 0).
#[derive(Clone, Debug, Default)]
pub struct Skew {
    segments: Vec<Segment>,
}

impl Skew {
    pub fn of(faults: &[FaultEvent]) -> Skew {
        let mut segments = Vec::new();
        for trace in faults.iter().filter_map(|f| f.clock.as_ref()).filter(|t| t.led) {
            for (i, &(from, offset)) in trace.sets.iter().enumerate() {
                let to = trace.sets.get(i + 1).map_or(u64::MAX, |next| next.0.saturating_add(PICKUP_MS));
                if offset != 0 {
                    segments.push(Segment { from, to, offset });
                }
            }
        }
        Skew { segments }
    }

    /// How far ahead of the true time `t` the logical clock can be at `t`: a leader whose clock
    /// ran `o` ahead at some `t' <= t` stamped `t' + o`, and the logical clock never goes back.
    pub fn ahead_at(&self, t: u64) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.offset > 0 && s.from <= t)
            .map(|s| (s.to.min(t) + s.offset as u64).saturating_sub(t))
            .max()
            .unwrap_or(0)
    }

    /// The largest amount by which a leader's clock may have run behind the true time at some
    /// moment of `[from, to]`: its expiry ticker sees keys due that much later.
    pub fn behind_within(&self, from: u64, to: u64) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.offset < 0 && s.from <= to && s.to >= from)
            .map(|s| s.offset.unsigned_abs())
            .max()
            .unwrap_or(0)
    }

    /// The largest offsets ahead and behind, for the report.
    pub fn extremes(&self) -> (u64, u64) {
        let ahead = self.segments.iter().map(|s| s.offset.max(0) as u64).max().unwrap_or(0);
        let behind = self.segments.iter().map(|s| s.offset.min(0).unsigned_abs()).max().unwrap_or(0);
        (ahead, behind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(led: bool, sets: Vec<(u64, i64)>) -> FaultEvent {
        let mut e = FaultEvent::new(FaultKind::Clock, 0, 0);
        e.clock = Some(ClockTrace { node: 2, led, sets });
        e
    }

    #[test]
    fn a_forward_jump_keeps_the_logical_clock_ahead_until_true_time_catches_up() {
        // +3 s from t=10 000 to the heal at 14 000 (used until 14 500 at the latest).
        let skew = Skew::of(&[event(true, vec![(10_000, 3_000), (14_000, 0)])]);
        assert_eq!(skew.ahead_at(9_000), 0);
        assert_eq!(skew.ahead_at(12_000), 3_000);
        assert_eq!(skew.ahead_at(15_000), 2_500, "stamps of 17 500 at most, then true time catches up");
        assert_eq!(skew.ahead_at(17_500), 0);
        assert_eq!(skew.behind_within(0, 20_000), 0);
    }

    #[test]
    fn a_backward_offset_counts_only_while_it_may_be_in_effect() {
        let skew = Skew::of(&[event(true, vec![(10_000, -200), (10_100, -400), (10_200, 0)])]);
        assert_eq!(skew.behind_within(0, 9_999), 0);
        assert_eq!(skew.behind_within(10_650, 20_000), 400, "the last offset may linger for the pick-up delay");
        assert_eq!(skew.behind_within(10_701, 20_000), 0);
        assert_eq!(skew.extremes(), (0, 400));
    }

    #[test]
    fn a_node_that_never_led_adds_no_allowance() {
        let skew = Skew::of(&[event(false, vec![(10_000, 5_000), (14_000, 0)])]);
        assert_eq!(skew.ahead_at(12_000), 0);
        assert_eq!(skew.extremes(), (0, 0));
    }

    #[test]
    fn shapes_cover_both_directions_of_jumps_and_drifts() {
        let shapes: Vec<Shape> = (0..64u64).map(|i| Shape::from_pick(i << 1 | (i << 9))).collect();
        assert!(shapes.iter().any(|s| matches!(s, Shape::Jump(ms) if *ms > 0)));
        assert!(shapes.iter().any(|s| matches!(s, Shape::Jump(ms) if *ms < 0)));
        assert!(shapes.iter().any(|s| matches!(s, Shape::Drift(r) if *r > 0)));
        assert!(shapes.iter().any(|s| matches!(s, Shape::Drift(r) if *r < 0)));
        assert_eq!(Shape::Drift(500).offset_after(Duration::from_millis(2_000)), 1_000);
    }
}

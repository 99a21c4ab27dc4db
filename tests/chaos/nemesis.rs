//! The nemesis: runs the plan's fault steps one after another (inject, hold, heal, gap) and
//! records when each fault was active. Targets that depend on the cluster's state (the
//! leader) are looked up at injection time; random targets come from the step's `pick`.
//! Membership steps (`reconfig.rs`) and clock steps (`skew.rs`) act throughout their hold and
//! record what they did as they go.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cluster::Cluster;
use super::history::{wall_ms, Clock};
use super::netns::Firewall;
use super::plan::{FaultKind, FaultStep, Rng};
use super::skew::ClockTrace;
use super::workload::Ctx;
use super::{reconfig, skew};

/// One fault as it happened.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct FaultEvent {
    pub kind: FaultKind,
    pub targets: Vec<u64>,
    /// The target was the leader at injection time (leader kill, isolation or pause, or a
    /// membership step that removed the leader).
    pub leader_fault: bool,
    pub note: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub start_wall_ms: u64,
    pub end_wall_ms: u64,
    /// When the leader was hit, if later than `start_ns` (a membership step removes the leader
    /// after the new node joined): where the availability figure starts counting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_hit_ns: Option<u64>,
    /// What a membership or clock step did, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<Milestone>,
    /// Why a membership step could not be carried through (a finding: the run fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// A clock step's offsets, for the TTL checks' bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockTrace>,
}

impl FaultEvent {
    /// A fault of `kind` that began now: no target, note, milestone or end yet.
    pub fn new(kind: FaultKind, start_ns: u64, start_wall_ms: u64) -> FaultEvent {
        FaultEvent {
            kind,
            targets: Vec::new(),
            leader_fault: false,
            note: String::new(),
            start_ns,
            end_ns: start_ns,
            start_wall_ms,
            end_wall_ms: start_wall_ms,
            leader_hit_ns: None,
            milestones: Vec::new(),
            failure: None,
            clock: None,
        }
    }
}

/// One thing a step did, and when (ns of the run's clock).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Milestone {
    pub at_ns: u64,
    pub what: String,
}

pub struct Nemesis<'a> {
    pub cluster: &'a mut Cluster,
    pub firewall: Option<&'a Firewall>,
    pub http: reqwest::Client,
    pub clock: Clock,
    /// The workload's client slots, which a membership step moves off a removed node.
    pub ctx: Arc<Ctx>,
    /// Set by `leader_or` when the current step targets the leader.
    pub hit_leader: bool,
}

impl Nemesis<'_> {
    /// The current leader (and a note saying so), or `fallback` when no leader answers.
    pub async fn leader_or(&mut self, fallback: u64) -> (u64, String) {
        match self.cluster.current_leader(&self.http, Instant::now() + Duration::from_secs(3)).await {
            Some(l) => {
                self.hit_leader = true;
                (l, format!("leader was {l}"))
            }
            None => (fallback, format!("no leader answered; chose node {fallback}")),
        }
    }

    fn fw(&self) -> Result<&Firewall, String> {
        self.firewall.ok_or_else(|| "partition fault without a network namespace".to_string())
    }

    /// Cuts both directions between every node of `a` and every node of `b`.
    fn cut(&self, a: &[u64], b: &[u64]) -> Result<(), String> {
        let fw = self.fw()?;
        for &x in a {
            for &y in b {
                fw.drop_packets(&self.cluster.ip(x), &self.cluster.ip(y))?;
                fw.drop_packets(&self.cluster.ip(y), &self.cluster.ip(x))?;
            }
        }
        Ok(())
    }

    /// Appends a milestone to `event` and prints it.
    pub fn milestone(&self, event: &mut FaultEvent, what: String) {
        let at_ns = self.clock.now_ns();
        println!("chaos: +{:>6.1}s   {}: {what}", at_ns as f64 / 1e9, event.kind.name());
        event.milestones.push(Milestone { at_ns, what });
    }

    /// Runs one step; the event ends when the fault is healed (the gap follows it).
    pub async fn step(&mut self, step: &FaultStep) -> Result<FaultEvent, String> {
        let event = match step.kind {
            FaultKind::Membership => reconfig::step(self, step).await?,
            FaultKind::Clock => skew::step(self, step).await?,
            _ => self.inject_hold_heal(step).await?,
        };
        self.cluster.reap();
        Ok(event)
    }

    async fn inject_hold_heal(&mut self, step: &FaultStep) -> Result<FaultEvent, String> {
        let ids = self.cluster.ids();
        let n = ids.len() as u64;
        let mut rng = Rng::new(step.pick);
        let random = ids[rng.below(n) as usize];
        let mut shuffled = ids.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let (start_ns, start_wall_ms) = (self.clock.now_ns(), wall_ms());
        self.hit_leader = step.kind == FaultKind::KillAll;
        let mut note = String::new();
        let targets: Vec<u64>;
        // Blocking calls (signals, iptables) take milliseconds; block_in_place keeps the
        // runtime's other worker serving clients meanwhile.
        match step.kind {
            FaultKind::KillRandom => {
                targets = vec![random];
                tokio::task::block_in_place(|| self.cluster.kill(random));
            }
            FaultKind::KillLeader => {
                let (l, why) = self.leader_or(random).await;
                note = why;
                targets = vec![l];
                tokio::task::block_in_place(|| self.cluster.kill(l));
            }
            FaultKind::KillAll => {
                targets = ids.clone();
                tokio::task::block_in_place(|| ids.iter().for_each(|id| self.cluster.kill(*id)));
            }
            FaultKind::Pause => {
                let t = if step.pick & 1 == 0 {
                    let (l, why) = self.leader_or(random).await;
                    note = why;
                    l
                } else {
                    random
                };
                targets = vec![t];
                tokio::task::block_in_place(|| self.cluster.pause(t))?;
            }
            FaultKind::PartitionLeader => {
                let (l, why) = self.leader_or(random).await;
                note = why;
                targets = vec![l];
                let others: Vec<u64> = ids.iter().copied().filter(|x| *x != l).collect();
                tokio::task::block_in_place(|| self.cut(&[l], &others))?;
            }
            FaultKind::PartitionSplit => {
                let minority = &shuffled[..(ids.len() - 1) / 2];
                let majority = &shuffled[(ids.len() - 1) / 2..];
                note = format!("minority {minority:?} | majority {majority:?}");
                targets = minority.to_vec();
                tokio::task::block_in_place(|| self.cut(minority, majority))?;
            }
            FaultKind::PartitionBridge => {
                let bridge = shuffled[0];
                let rest = &shuffled[1..];
                let (a, b) = rest.split_at(rest.len() / 2);
                note = format!("bridge {bridge} sees {a:?} and {b:?}, which cannot see each other");
                targets = vec![bridge];
                tokio::task::block_in_place(|| self.cut(a, b))?;
            }
            FaultKind::PartitionOneWay => {
                let src = if step.pick & 1 == 0 {
                    let (l, why) = self.leader_or(random).await;
                    note = why;
                    l
                } else {
                    random
                };
                targets = vec![src];
                note = format!("{note}; packets from {src} to every other node dropped");
                let fw = self.fw()?;
                let cluster = &*self.cluster;
                tokio::task::block_in_place(|| {
                    ids.iter()
                        .filter(|x| **x != src)
                        .try_for_each(|x| fw.drop_packets(&cluster.ip(src), &cluster.ip(*x)))
                })?;
            }
            FaultKind::Membership | FaultKind::Clock => {
                return Err(format!("{} is not an inject-hold-heal fault", step.kind.name()))
            }
        }
        if let Some(fw) = self.firewall.filter(|_| step.kind.is_partition()) {
            note = format!("{note}; rules: {}", fw.rules().replace('\n', " "));
        }
        println!(
            "chaos: +{:>6.1}s inject {} on {targets:?} for {} ms ({note})",
            start_ns as f64 / 1e9,
            step.kind.name(),
            step.hold_ms
        );
        tokio::time::sleep(Duration::from_millis(step.hold_ms)).await;
        self.heal(step.kind, &targets)?;
        let end_ns = self.clock.now_ns();
        println!("chaos: +{:>6.1}s healed {}", end_ns as f64 / 1e9, step.kind.name());
        Ok(FaultEvent {
            targets,
            leader_fault: self.hit_leader,
            note,
            end_ns,
            end_wall_ms: wall_ms(),
            ..FaultEvent::new(step.kind, start_ns, start_wall_ms)
        })
    }

    fn heal(&mut self, kind: FaultKind, targets: &[u64]) -> Result<(), String> {
        tokio::task::block_in_place(|| match kind {
            FaultKind::KillRandom | FaultKind::KillLeader | FaultKind::KillAll => {
                targets.iter().try_for_each(|id| self.cluster.start(*id))
            }
            FaultKind::Pause => targets.iter().try_for_each(|id| self.cluster.resume(*id)),
            _ => self.fw()?.heal(),
        })
    }

    /// Undoes whatever may still be in effect (after an error part-way through a step).
    pub fn heal_all(&mut self) -> Result<(), String> {
        if let Some(fw) = self.firewall {
            fw.heal()?;
        }
        self.cluster.reset_clocks()?;
        tokio::task::block_in_place(|| self.cluster.heal_processes())
    }
}

//! The membership fault: while the workloads run, a fresh node (the next spare: a new id, its
//! own data dir and address) starts with `--join` through a member, is added as a learner,
//! catches up and is promoted to voter; after the step's hold one voter is removed: the leader
//! ("replace the leader") or another old voter, as the step's `pick` says. The removed node
//! keeps running for a moment, so requests still reach it as they would in a real cluster,
//! then the client slots that named it move to the new node and the harness stops it (its own
//! PID only). The cluster keeps its size, every id is used once.
//!
//! Cairn has no "add a learner only" call: `POST /cluster/members`, which the new node's
//! `--join` loop sends itself (the runbook's way), adds the learner, waits until it has caught
//! up and promotes it. The step watches each stage in the leader's `/cluster/status` and
//! records it as a milestone; the removal goes through `DELETE /cluster/members/{id}`. A change
//! that does not complete by its deadline is recorded as the event's `failure`, which fails
//! the run ("membership changes complete").

use std::time::{Duration, Instant};

use super::history::wall_ms;
use super::nemesis::{FaultEvent, Nemesis};
use super::plan::{FaultKind, FaultStep, Rng};

/// How long the new node may take to be promoted (catch-up included).
const JOIN_DEADLINE: Duration = Duration::from_secs(60);
/// How long the removal may take to be accepted, and then to show in a new leader's status.
const REMOVE_DEADLINE: Duration = Duration::from_secs(30);
/// How long a removed node keeps running (and answering its clients) before it is stopped.
const LINGER: Duration = Duration::from_millis(1_000);
const POLL: Duration = Duration::from_millis(100);
/// Timeout of one membership request (a change is a few Raft round trips and a catch-up).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs one membership step; see the module comment.
pub async fn step(nem: &mut Nemesis<'_>, step: &FaultStep) -> Result<FaultEvent, String> {
    let mut event = FaultEvent::new(FaultKind::Membership, nem.clock.now_ns(), wall_ms());
    let members = nem.cluster.ids();
    let mut rng = Rng::new(step.pick);
    let random = members[rng.below(members.len() as u64) as usize];
    let (via, why) = nem.leader_or(random).await;
    let new = tokio::task::block_in_place(|| nem.cluster.start_spare(via))?;
    event.targets.push(new);
    println!(
        "chaos: +{:>6.1}s inject membership: node {new} joins, then a voter is removed ({})",
        event.start_ns as f64 / 1e9,
        if step.pick & 1 == 0 { "the leader" } else { "a follower" }
    );
    nem.milestone(&mut event, format!("node {new} started with --join through node {via} ({why})"));
    if let Err(failure) = admitted(nem, &mut event, new).await {
        return Ok(finish(nem, event, failure));
    }
    tokio::time::sleep(Duration::from_millis(step.hold_ms)).await;

    let view = nem.cluster.leader_view(&nem.http, Instant::now() + Duration::from_secs(3)).await;
    let leader = view.as_ref().map(|v| v.id);
    // No leader answering: assume every member, the new one included, votes.
    let voters = view.map(|v| v.voters).unwrap_or_else(|| nem.cluster.ids());
    let others: Vec<u64> = voters.iter().copied().filter(|v| *v != new && Some(*v) != leader).collect();
    let victim = match (step.pick & 1 == 0, leader) {
        (true, Some(l)) => l,
        _ if !others.is_empty() => others[rng.below(others.len() as u64) as usize],
        _ => return Ok(finish(nem, event, format!("no voter to remove besides node {new} and the leader"))),
    };
    event.targets.push(victim);
    let victim_led = leader == Some(victim);
    if victim_led {
        event.leader_fault = true;
        event.leader_hit_ns = Some(nem.clock.now_ns());
    }
    let role = if victim_led { "the leader" } else { "a follower" };
    nem.milestone(&mut event, format!("removing node {victim} ({role})"));
    if let Err(failure) = remove(nem, &mut event, victim).await {
        return Ok(finish(nem, event, failure));
    }
    let expected: Vec<u64> = {
        let mut v: Vec<u64> = voters.iter().copied().filter(|v| *v != victim).collect();
        v.sort_unstable();
        v
    };
    if let Err(failure) = settled(nem, &mut event, victim, &expected).await {
        return Ok(finish(nem, event, failure));
    }
    tokio::time::sleep(LINGER).await;
    let moved = nem.ctx.move_slots(&nem.cluster.url(victim), &nem.cluster.url(new));
    tokio::task::block_in_place(|| nem.cluster.retire(victim));
    nem.milestone(&mut event, format!("node {victim} stopped; {moved} client slot(s) moved to node {new}"));
    event.note = format!("node {new} joined; node {victim} ({role}) removed");
    Ok(finish(nem, event, String::new()))
}

/// Ends the event; a non-empty `failure` says why the change was not carried through.
fn finish(nem: &Nemesis<'_>, mut event: FaultEvent, failure: String) -> FaultEvent {
    event.end_ns = nem.clock.now_ns();
    event.end_wall_ms = wall_ms();
    if failure.is_empty() {
        println!("chaos: +{:>6.1}s healed membership ({})", event.end_ns as f64 / 1e9, event.note);
    } else {
        println!("chaos: +{:>6.1}s membership step FAILED: {failure}", event.end_ns as f64 / 1e9);
        event.note = failure.clone();
        event.failure = Some(failure);
    }
    event
}

/// Waits until the leader lists `new` as a voter, noting when it was first seen as a learner.
async fn admitted(nem: &mut Nemesis<'_>, event: &mut FaultEvent, new: u64) -> Result<(), String> {
    let deadline = Instant::now() + JOIN_DEADLINE;
    let mut seen_learner = false;
    let mut last = String::from("no leader answered");
    while Instant::now() < deadline {
        nem.cluster.reap();
        if !nem.cluster.is_up(new) {
            return Err(format!("node {new} exited before it was admitted; see node{new}.log"));
        }
        if let Some(v) = nem.cluster.leader_view(&nem.http, Instant::now() + Duration::from_secs(2)).await {
            if v.voters.contains(&new) {
                let what = format!("node {new} promoted to voter; voters {:?} (leader {})", v.voters, v.id);
                nem.milestone(event, what);
                return Ok(());
            }
            if v.learners.contains(&new) && !seen_learner {
                seen_learner = true;
                nem.milestone(event, format!("node {new} added as a learner, catching up (leader {})", v.id));
            }
            last = format!("leader {}: voters {:?}, learners {:?}", v.id, v.voters, v.learners);
        }
        tokio::time::sleep(POLL).await;
    }
    Err(format!("node {new} was not a voter {JOIN_DEADLINE:?} after it started; last seen: {last}"))
}

/// Asks the leader to remove `victim` until it is no longer a member there. A 409 (the join's
/// own request may still hold the change lock), a 503 or a transport error is retried; a 504
/// may have taken effect, which the next status shows.
async fn remove(nem: &mut Nemesis<'_>, event: &mut FaultEvent, victim: u64) -> Result<(), String> {
    let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).no_proxy().build().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + REMOVE_DEADLINE;
    let mut last = String::from("no leader answered");
    while Instant::now() < deadline {
        let Some(view) = nem.cluster.leader_view(&nem.http, Instant::now() + Duration::from_secs(2)).await else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        if !view.voters.contains(&victim) && !view.learners.contains(&victim) {
            nem.milestone(event, format!("node {victim} is no longer a member (leader {})", view.id));
            return Ok(());
        }
        let url = format!("{}/cluster/members/{victim}", nem.cluster.url(view.id));
        let sent = tokio::time::timeout(REQUEST_TIMEOUT, http.delete(&url).send()).await;
        last = match sent {
            Err(_) => "the request timed out".to_string(),
            Ok(Err(e)) => format!("transport: {e}"),
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                if status == 200 {
                    let what = format!("DELETE /cluster/members/{victim} through node {}: 200", view.id);
                    nem.milestone(event, what);
                    return Ok(());
                }
                format!("HTTP {status} {}", body.trim())
            }
        };
        tokio::time::sleep(POLL * 3).await;
    }
    Err(format!("node {victim} was not removed within {REMOVE_DEADLINE:?}; last answer: {last}"))
}

/// Waits until a leader among the remaining members reports exactly `expected` as voters and
/// no learner.
async fn settled(nem: &mut Nemesis<'_>, event: &mut FaultEvent, victim: u64, expected: &[u64]) -> Result<(), String> {
    let rest: Vec<u64> = nem.cluster.ids().into_iter().filter(|id| *id != victim).collect();
    let deadline = Instant::now() + REMOVE_DEADLINE;
    let mut last = String::from("no leader answered");
    while Instant::now() < deadline {
        let views = nem.cluster.statuses_of(&rest, &nem.http, Instant::now() + Duration::from_secs(2)).await;
        if let Some(v) = views.into_iter().flatten().filter(|s| s.role == "leader").max_by_key(|s| s.term) {
            let mut voters = v.voters.clone();
            voters.sort_unstable();
            if voters == expected && v.learners.is_empty() {
                nem.milestone(event, format!("voters {voters:?} under leader {}", v.id));
                return Ok(());
            }
            last = format!("leader {}: voters {:?}, learners {:?}", v.id, v.voters, v.learners);
        }
        tokio::time::sleep(POLL).await;
    }
    Err(format!("no leader among {rest:?} reported voters {expected:?} within {REMOVE_DEADLINE:?}; last: {last}"))
}

//! After every fault is healed: the final strong reads that join the history, and the check
//! that the replicas converge.

use std::time::{Duration, Instant};

use super::checks::CheckResult;
use super::client::Api;
use super::cluster::Cluster;
use super::history::{Clock, Op, OpKind, Status, Workload};
use super::workload::{Recorder, FINAL_READER};

/// Deadlines of the final reads and of convergence.
pub const FINAL_READ_DEADLINE: Duration = Duration::from_secs(30);
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(30);

/// After healing: a strong read of every register, counter and stale key (and the lock
/// workload's fenced key) through the
/// leader, retried until it succeeds or the deadline passes. These reads join the history;
/// the check fails if some key could not be read (its acknowledged writes would go unchecked).
pub async fn final_reads(cluster: &Cluster, leader: u64, ops: &[Op], clock: Clock) -> (Vec<Op>, CheckResult) {
    let mut keys: Vec<(Workload, String)> = ops
        .iter()
        .filter(|o| {
            matches!(o.workload, Workload::Register | Workload::Counter | Workload::Stale)
                || (o.workload == Workload::Lock && o.rec.op == OpKind::Write)
        })
        .map(|o| (o.workload, o.rec.key.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let api = Api::new(&cluster.url(leader), Duration::from_secs(5));
    let deadline = Instant::now() + FINAL_READ_DEADLINE;
    let mut out = Vec::new();
    let mut unread = Vec::new();
    for (w, key) in &keys {
        let mut rec = Recorder::new(FINAL_READER, *w, clock);
        let mut read = false;
        while !read && Instant::now() < deadline {
            let started = rec.begin();
            let reply = api.read(key, true).await;
            read = rec.finish(&api, started, OpKind::Read, key, serde_json::Value::Null, &reply).is_ok();
            if !read {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if !read {
            unread.push(key.clone());
        }
        out.extend(rec.ops);
    }
    let check = CheckResult {
        name: "final reads succeed".into(),
        passed: unread.is_empty(),
        detail: if unread.is_empty() {
            format!("{} keys read through leader {leader}", keys.len())
        } else {
            format!("no successful strong read within the deadline for {unread:?}")
        },
    };
    (out, check)
}

/// Every node catches up with the leader and then serves, from its own state, the value the
/// leader serves for every final-read key. Retried until the deadline, because a write whose
/// client gave up may still be in flight (a follower forwards for up to the write timeout).
pub async fn convergence(cluster: &Cluster, http: &reqwest::Client, leader: u64, finals: &[Op]) -> CheckResult {
    let keys: Vec<&str> = finals.iter().filter(|o| o.is_ok()).map(|o| o.rec.key.as_str()).collect();
    let leader_api = Api::new(&cluster.url(leader), Duration::from_secs(5));
    let apis: Vec<(u64, Api)> =
        cluster.ids().into_iter().map(|id| (id, Api::new(&cluster.url(id), Duration::from_secs(5)))).collect();
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    loop {
        let problems = divergence(cluster, http, leader, &leader_api, &apis, &keys).await;
        if problems.is_empty() {
            return CheckResult {
                name: "replicas converge".into(),
                passed: true,
                detail: format!("every node caught up with leader {leader} and serves the same {} keys", keys.len()),
            };
        }
        if Instant::now() >= deadline {
            return CheckResult {
                name: "replicas converge".into(),
                passed: false,
                detail: format!("still diverging at the deadline: {}", problems.join("; ")),
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What differs right now between the leader and the other nodes (empty: nothing).
async fn divergence(
    cluster: &Cluster,
    http: &reqwest::Client,
    leader: u64,
    leader_api: &Api,
    apis: &[(u64, Api)],
    keys: &[&str],
) -> Vec<String> {
    let views = cluster.statuses(http, Instant::now() + Duration::from_secs(3)).await;
    let Some(target) = views.iter().flatten().find(|s| s.id == leader).map(|s| s.applied) else {
        return vec![format!("leader {leader} did not report its applied index")];
    };
    let mut problems: Vec<String> = views
        .iter()
        .filter_map(|v| match v {
            Ok(s) if s.applied >= target => None,
            Ok(s) => Some(format!("node {} applied {} < leader's {target}", s.id, s.applied)),
            Err(e) => Some(e.clone()),
        })
        .collect();
    if !problems.is_empty() {
        return problems;
    }
    for key in keys {
        let truth = leader_api.read(key, true).await;
        if truth.status != Status::Ok {
            problems.push(format!("leader read of {key} failed: {:?}", truth.error));
            continue;
        }
        for (id, api) in apis {
            let seen = api.read(key, false).await;
            if seen.status != Status::Ok || seen.value() != truth.value() {
                problems.push(format!(
                    "node {id} serves {key} = {} ({:?}); leader serves {}",
                    seen.value(),
                    seen.error,
                    truth.value()
                ));
            }
        }
    }
    problems
}

//! Membership changes on real processes: growing 3 → 5 with `--join` (new nodes catch up by
//! snapshot because the log behind it was purged), shrinking back, replacing a dead voter,
//! removing the leader, retired ids, and concurrent changes answered with 409.

use std::time::Duration;

use crate::support::{deadline_in, until, Cluster, Http};
use reqwest::Method;
use serde_json::{json, Value};

async fn members(http: &Http, url: &str) -> Result<(Vec<u64>, Vec<u64>), String> {
    let s = http.status(url).await?;
    let list = s["members"].as_array().ok_or("no members")?;
    let pick = |voter: bool| {
        let mut v: Vec<u64> =
            list.iter().filter(|m| m["voter"] == json!(voter)).filter_map(|m| m["id"].as_u64()).collect();
        v.sort();
        v
    };
    Ok((pick(true), pick(false)))
}

async fn wait_voters(c: &Cluster, via: u64, want: &[u64], secs: u64) {
    let (http, url) = (&c.http, c.url(via));
    until(deadline_in(secs), &format!("voters {want:?}"), async || {
        let (voters, learners) = members(http, &url).await?;
        if voters == want && learners.is_empty() {
            Ok(())
        } else {
            Err(format!("voters {voters:?} learners {learners:?}"))
        }
    })
    .await;
}

async fn remove_until_accepted(c: &Cluster, via: u64, id: u64) {
    let (http, url) = (&c.http, c.url(via));
    until(deadline_in(20), &format!("removal of node {id} to be accepted"), async || {
        let r = http.send(Method::DELETE, &format!("{url}/cluster/members/{id}"), None, &[]).await?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
}

/// Waits until adding node `id` (at an address nobody listens on) through `url` is refused
/// with 409 `membership_conflict` because another change is running.
async fn second_change_is_refused(http: &Http, url: &str, id: u64, secs: u64) {
    until(deadline_in(secs), "a second change to be refused while the first runs", async || {
        let body = serde_json::to_vec(&json!({"id": id, "addr": "127.0.0.1:1"})).unwrap();
        let r = http.send(Method::POST, &format!("{url}/cluster/members"), Some(body), &[]).await?;
        if r.status == 409 && r.error_code() == Some("membership_conflict") {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
}

async fn membership(c: &Cluster, via: u64, method: Method, path: &str, body: Option<Value>) -> crate::support::Resp {
    c.http.must(method, &format!("{}{path}", c.url(via)), body.map(|b| serde_json::to_vec(&b).unwrap()), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_grows_to_five_by_join_and_shrinks_back_with_ids_retired() {
    // Snapshot often and keep no log behind it, so joiners must catch up from a snapshot.
    let mut c = Cluster::start_growable(5, 3, &["--snapshot-logs", "20", "--snapshot-keep-logs", "0"]);
    c.wait_for_leader(deadline_in(20)).await;
    for i in 0..120 {
        c.http.put(&c.leader_url(), &format!("k{i}"), &json!({"value": i})).await.ok();
    }
    c.start_joining(4, 1);
    c.start_joining(5, 2);
    wait_voters(&c, 1, &[1, 2, 3, 4, 5], 90).await;
    for id in [4, 5] {
        let (http, url) = (&c.http, c.url(id));
        until(deadline_in(30), "a joined node to serve the data from its own state", async || {
            let r = http.try_get_query(&url, "k119", "consistency=stale").await?;
            if r.status == 200 && r.data()["value"] == json!(119) {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        })
        .await;
    }

    // Shrink back to three. A join's own request may still hold the change lock for a moment
    // after the new voter shows up (409 is the right answer then), so removals are retried.
    remove_until_accepted(&c, 1, 5).await;
    remove_until_accepted(&c, 2, 4).await;
    wait_voters(&c, 1, &[1, 2, 3], 30).await;
    // A removed id is never admitted again.
    let again = membership(&c, 1, Method::POST, "/cluster/members", Some(json!({"id": 4, "addr": c.addr(4)}))).await;
    again.assert_error(409, "membership_conflict");
    membership(&c, 1, Method::DELETE, "/cluster/members/9", None).await.assert_error(404, "not_found");
    c.http.put(&c.leader_url(), "after-shrink", &json!({"value": 1})).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_voter_is_replaced_and_the_leader_can_be_removed() {
    let mut c = Cluster::start_growable(4, 3, &[]);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let dead = c.follower_ids()[0];
    c.kill(dead);
    membership(&c, leader, Method::DELETE, &format!("/cluster/members/{dead}"), None).await.ok();
    c.start_joining(4, leader);
    let mut want: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|i| *i != dead).collect();
    want.sort();
    wait_voters(&c, leader, &want, 60).await;

    // Remove the current leader: the rest elect a new one and keep serving writes. The join's
    // own request may still hold the change lock for a moment (409 is the right answer then).
    let (http, url) = (&c.http, c.url(leader));
    until(deadline_in(20), "the leader's removal to be accepted", async || {
        let r = http.send(Method::DELETE, &format!("{url}/cluster/members/{leader}"), None, &[]).await?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    let rest: Vec<u64> = want.iter().copied().filter(|i| *i != leader).collect();
    // The removed leader stops naming itself leader and is not ready: it is no member.
    let removed = c.url(leader);
    until(deadline_in(20), "the removed leader to stop claiming leadership", async || {
        let s = http.status(&removed).await?;
        let ready = http.send(Method::GET, &format!("{removed}/ready"), None, &[]).await?;
        let claims = s["leader"] == json!(leader) || s["role"] == "leader";
        if !claims && ready.status == 503 && ready.text.contains("not a member") {
            Ok(())
        } else {
            Err(format!("status {s}, ready {ready:?}"))
        }
    })
    .await;
    let (http, urls) = (&c.http, rest.iter().map(|i| c.url(*i)).collect::<Vec<_>>());
    until(deadline_in(30), "a write under a new leader", async || {
        for u in &urls {
            if let Ok(r) = http.try_put(u, "after-leader-removal", &json!({"value": 1})).await {
                if r.status == 200 && r.header("x-cairn-leader").is_some_and(|l| l != leader.to_string()) {
                    return Ok(());
                }
            }
        }
        Err("no write accepted yet".into())
    })
    .await;
    wait_voters(&c, rest[0], &rest, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_membership_changes_get_409() {
    let mut c = Cluster::start_with(3, &["--join-timeout-s", "20"]);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    // Node 9's address has nothing listening: its admission blocks until the join timeout.
    let ghost = crate::support::free_port();
    let url = c.url(leader);
    let http = c.http.clone();
    let slow = tokio::spawn(async move {
        let body = serde_json::to_vec(&json!({"id": 9, "addr": format!("127.0.0.1:{ghost}")})).unwrap();
        http.send(Method::POST, &format!("{url}/cluster/members"), Some(body), &[]).await
    });
    let (http, url) = (&c.http, c.url(leader));
    // Node 9 shows up as a learner as soon as its admission is under way.
    until(deadline_in(15), "node 9 to be added as a learner", async || {
        let (_, learners) = members(http, &url).await?;
        if learners.contains(&9) {
            Ok(())
        } else {
            Err(format!("learners {learners:?}"))
        }
    })
    .await;
    second_change_is_refused(http, &url, 8, 15).await;
    slow.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_finishes_after_its_caller_hangs_up() {
    let mut c = Cluster::start_growable(4, 3, &["--join-timeout-s", "60"]);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let url = c.url(leader);
    // Node 4 is not running yet, so its admission cannot finish; the caller gives up after 1 s.
    let impatient = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let body = serde_json::to_vec(&json!({"id": 4, "addr": c.addr(4)})).unwrap();
    let r = impatient.post(format!("{url}/cluster/members")).body(body).send().await;
    assert!(r.is_err(), "the admission of a node that is down answered: {r:?}");
    // The change goes on without its caller: it still holds the change slot ...
    second_change_is_refused(&c.http, &url, 5, 10).await;
    // ... and once node 4 runs, it catches up and is promoted. It starts with --join, whose own
    // request meets the running change and keeps retrying; either way 4 ends up a voter.
    c.start_joining(4, leader);
    wait_voters(&c, leader, &[1, 2, 3, 4], 60).await;
}

/// A node started with a retired id cannot join (the cluster never admits the id again), so
/// it stops with a non-zero exit and says why, instead of running on alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_with_a_retired_id_exits_non_zero() {
    let mut c = Cluster::start_growable(4, 3, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    c.start_joining(4, 1);
    wait_voters(&c, 1, &[1, 2, 3, 4], 60).await;
    remove_until_accepted(&c, 1, 4).await;
    wait_voters(&c, 1, &[1, 2, 3], 30).await;
    c.terminate(4, deadline_in(20)).await;
    std::fs::remove_dir_all(c.data_dir(4)).unwrap();
    c.start_joining(4, 1);
    let status = c.wait_for_exit(4, deadline_in(30)).await;
    assert!(!status.success(), "a retired id must not run: {status}");
    let log = crate::support::read_log(&c.log_path(4));
    assert!(log.contains("retired"), "the log says why: {log}");
}

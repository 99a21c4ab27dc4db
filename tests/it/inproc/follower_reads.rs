//! Reads and writes through followers of a 3-node cluster: proxied writes, strong reads
//! that see a just-acknowledged write, stale default reads, `minVersion` and the
//! X-Cairn-* headers.

use crate::support::{deadline_in, Cluster};
use serde_json::json;

/// A running 3-node cluster with an agreed leader.
async fn three_nodes() -> Cluster {
    let mut cluster = Cluster::in_process(3, &[]);
    cluster.wait_for_leader(deadline_in(20)).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_the_leader_and_on_a_follower_both_succeed() {
    let c = three_nodes().await;
    let leader = c.leader_url();
    let follower = c.url(c.follower_ids()[0]);

    let on_leader = c.http.put(&leader, "via-leader", &json!({"value": "L"})).await.ok();
    assert_eq!(on_leader.data()["value"], "L", "{on_leader:?}");
    let on_follower = c.http.put(&follower, "via-follower", &json!({"value": "F"})).await.ok();
    assert_eq!(on_follower.data()["value"], "F", "{on_follower:?}");
    assert!(on_follower.version() > on_leader.version(), "versions grow across proxied writes");

    for key_value in [("via-leader", "L"), ("via-follower", "F")] {
        let got = c.http.get_query(&leader, key_value.0, "consistency=strong").await.ok();
        assert_eq!(got.data()["value"], key_value.1, "{got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strong_read_on_a_follower_right_after_a_write_sees_it() {
    let c = three_nodes().await;
    let leader = c.leader_url();
    for follower_id in c.follower_ids() {
        let follower = c.url(follower_id);
        for round in 0..5 {
            let key = format!("fresh-{follower_id}");
            let put = c.http.put(&leader, &key, &json!({"value": round})).await.ok();
            let got = c.http.get_query(&follower, &key, "consistency=strong").await.ok();
            assert_eq!(got.data()["value"], json!(round), "strong read missed the write: {got:?}");
            assert!(got.version() >= put.version(), "{got:?} vs {put:?}");
            assert_eq!(got.header("x-cairn-consistency"), Some("linearizable"), "{got:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_read_is_stale_on_a_follower_and_linearizable_on_the_leader() {
    let c = three_nodes().await;
    let leader = c.leader_url();
    let follower = c.url(c.follower_ids()[0]);
    c.http.put(&leader, "mode", &json!({"value": 1})).await.ok();

    let on_follower = c.http.get(&follower, "mode").await;
    assert!(matches!(on_follower.status, 200 | 404), "{on_follower:?}");
    assert_eq!(on_follower.header("x-cairn-consistency"), Some("stale"), "{on_follower:?}");

    let on_leader = c.http.get(&leader, "mode").await.ok();
    assert_eq!(on_leader.data()["value"], 1, "{on_leader:?}");
    assert_eq!(on_leader.header("x-cairn-consistency"), Some("linearizable"), "{on_leader:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_read_on_a_follower_returns_the_written_value() {
    let c = three_nodes().await;
    let leader = c.leader_url();
    for follower_id in c.follower_ids() {
        let follower = c.url(follower_id);
        for round in 0..5 {
            let key = format!("mv-{follower_id}");
            let version = c.http.put(&leader, &key, &json!({"value": round})).await.ok().version();
            let got = c.http.get_query(&follower, &key, &format!("minVersion={version}")).await.ok();
            assert_eq!(got.data()["value"], json!(round), "{got:?}");
            assert_eq!(got.version(), version, "{got:?}");
            assert!(got.applied_index() >= version, "{got:?}");
            assert_eq!(got.header("x-cairn-node"), Some(follower_id.to_string().as_str()), "{got:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_scan_on_a_follower_sees_the_written_key() {
    let c = three_nodes().await;
    let leader = c.leader_url();
    for follower_id in c.follower_ids() {
        let follower = c.url(follower_id);
        for round in 0..5 {
            let key = format!("mvs-{follower_id}-{round}");
            let version = c.http.put(&leader, &key, &json!({"value": round})).await.ok().version();
            let url = format!("{follower}/kv/items?prefix={key}&values=true&minVersion={version}");
            let page = c.http.must(reqwest::Method::GET, &url, None, &[]).await.ok();
            assert_eq!(page.data()["items"][0]["value"], json!(round), "{page:?}");
            assert_eq!(page.header("x-cairn-consistency"), Some("stale"), "{page:?}");
            assert!(page.header("x-cairn-index").unwrap().parse::<u64>().unwrap() >= version, "{page:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_node_leader_and_applied_index_headers() {
    let c = three_nodes().await;
    let leader_id = c.leader();
    let leader = c.leader_url();
    let put = c.http.put(&leader, "h", &json!({"value": true})).await.ok();
    assert_eq!(put.header("x-cairn-node"), Some(leader_id.to_string().as_str()), "{put:?}");
    assert_eq!(put.header("x-cairn-leader"), Some(leader_id.to_string().as_str()), "{put:?}");
    assert!(put.applied_index() >= put.version(), "the leader applied its own write: {put:?}");

    for id in c.ids() {
        // Answered by the node itself (stale read), for a hit and for a miss.
        for resp in [
            c.http.get_query(&c.url(id), "h", "consistency=stale").await,
            c.http.get_query(&c.url(id), "no-such-key", "consistency=stale").await,
        ] {
            assert_eq!(resp.header("x-cairn-node"), Some(id.to_string().as_str()), "node {id}: {resp:?}");
            assert_eq!(resp.header("x-cairn-leader"), Some(leader_id.to_string().as_str()), "node {id}: {resp:?}");
            resp.applied_index();
            assert_eq!(resp.header("x-cairn-consistency"), Some("stale"), "node {id}: {resp:?}");
        }
    }
}

//! `/metrics` parses as Prometheus text and carries the documented families, `/ready` flips
//! to 503 when a node loses its quorum, and request ids are echoed or generated.

use crate::support::{deadline_in, until, Cluster};
use reqwest::Method;
use serde_json::json;

/// Checks every sample line is `name{labels} value` with a numeric value; returns the names.
fn parse_prometheus(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in `{line}`"));
        assert!(value.parse::<f64>().is_ok(), "value of `{line}` is not a number");
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in `{line}`"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels in `{line}`");
            }
        }
        names.push(name.to_string());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_ready_flips_when_quorum_is_lost() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    c.http.put(&c.leader_url(), "k", &json!({"value": 1, "ttlSeconds": 1})).await.ok();

    let m = c.http.must(Method::GET, &format!("{}/metrics", c.url(leader)), None, &[]).await;
    assert_eq!(m.status, 200);
    let names = parse_prometheus(&m.text);
    for family in [
        "cairn_http_requests_total",
        "cairn_http_request_duration_seconds_bucket",
        "cairn_wal_fsync_duration_seconds_count",
        "cairn_raft_term",
        "cairn_raft_commit_index",
        "cairn_raft_applied_index",
        "cairn_raft_replication_lag_entries",
        "cairn_disk_bytes",
        "cairn_keys",
        "cairn_snapshots_built_total",
        "cairn_expired_keys_total",
    ] {
        assert!(names.iter().any(|n| n == family), "{family} missing from:\n{}", m.text);
    }

    for id in c.ids() {
        let r = c.http.must(Method::GET, &format!("{}/ready", c.url(id)), None, &[]).await;
        assert_eq!(r.status, 200, "node {id}: {r:?}");
    }
    // Two of three gone: the survivor can no longer know a live leader with a quorum.
    let survivor = c.follower_ids()[0];
    for id in c.ids().into_iter().filter(|i| *i != survivor) {
        c.kill(id);
    }
    let (http, url) = (&c.http, c.url(survivor));
    until(deadline_in(20), "the survivor to report not ready", async || {
        let r = http.send(Method::GET, &format!("{url}/ready"), None, &[]).await?;
        if r.status == 503 && r.error_code() == Some("not_ready") {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_generated() {
    let mut c = Cluster::single();
    c.wait_for_leader(deadline_in(15)).await;
    let url = format!("{}/kv/items/x", c.url(1));
    let given = c.http.must(Method::GET, &url, None, &[("x-request-id", "trace-me-42")]).await;
    assert_eq!(given.header("x-request-id"), Some("trace-me-42"));
    let made = c.http.must(Method::GET, &url, None, &[]).await;
    assert!(made.header("x-request-id").is_some_and(|v| v.len() >= 8), "{made:?}");

    // An unrouted request too carries its id and says who answered, and it adds no route to
    // the metrics (their route label is the matched route, so a client cannot grow it).
    let nowhere = format!("{}/no/such/route", c.url(1));
    let lost = c.http.send(Method::GET, &nowhere, None, &[("x-request-id", "lost-7")]).await.expect("an answer");
    lost.assert_error(404, "no_route");
    assert_eq!(lost.header("x-request-id"), Some("lost-7"));
    assert_eq!(lost.header("x-cairn-node"), Some("1"), "{lost:?}");
    let m = c.http.must(Method::GET, &format!("{}/metrics", c.url(1)), None, &[]).await;
    assert!(m.text.contains("route=\"/kv/items/{key}\""), "{}", m.text);
    assert!(!m.text.contains("unmatched") && !m.text.contains("/no/such"), "{}", m.text);
}

/// A leader cut off from its quorum keeps Raft's `role: leader` (it cannot step down without a
/// new term), but it stops counting as a leader in `/metrics`, shows how long its quorum has
/// been silent, and is not ready, so a "no leader" alert fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_a_quorum_stops_counting_as_leader() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let gauge = |text: &str, name: &str| -> Option<u64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    let url = c.url(leader);
    let m = c.http.must(Method::GET, &format!("{url}/metrics"), None, &[]).await;
    assert_eq!(gauge(&m.text, "cairn_raft_is_leader"), Some(1), "{}", m.text);
    for id in c.follower_ids() {
        c.kill(id);
    }
    let http = &c.http;
    until(deadline_in(20), "the isolated leader to stop counting as leader", async || {
        let m = http.send(Method::GET, &format!("{url}/metrics"), None, &[]).await?;
        let s = http.status(&url).await?;
        let ready = http.send(Method::GET, &format!("{url}/ready"), None, &[]).await?;
        let quiet = s["quorumAckMs"].as_u64().unwrap_or(0);
        if gauge(&m.text, "cairn_raft_is_leader") == Some(0)
            && gauge(&m.text, "cairn_raft_leader_quorum_ack_age_ms").is_some_and(|ms| ms > 1200)
            && quiet > 1200
            && ready.status == 503
        {
            Ok(())
        } else {
            Err(format!("status {s}, ready {ready:?}"))
        }
    })
    .await;
}

//! The test clock (`CAIRN_TEST_CLOCK_FILE`, `src/test_clock.rs`) that the chaos harness's
//! clock fault drives: the offset in the file shifts the leader's stamps and so the expiry of
//! TTL keys, while the replicated logical clock never moves back; a missing file refuses to
//! start.

use std::path::Path;

use serde_json::json;

use crate::support::{deadline_in, parse_rfc3339_utc, read_log, unix_now, until, Cluster};

/// Replaces the offset file in one step, as the chaos harness does.
fn set_offset(path: &Path, ms: i64) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{ms}\n")).expect("write the offset");
    std::fs::rename(&tmp, path).expect("replace the offset file");
}

fn expires_at(resp: &crate::support::Resp) -> f64 {
    let at = resp.data()["expiresAt"].as_str().unwrap_or_else(|| panic!("no expiresAt in {resp:?}"));
    parse_rfc3339_utc(at).unwrap_or_else(|| panic!("bad expiresAt {at}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_clock_shifts_the_leaders_stamps_and_the_logical_clock_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node1.clock");
    set_offset(&file, 0);
    let mut c = Cluster::prepare(1);
    c.set_node_env(1, &[("CAIRN_TEST_CLOCK_FILE", file.to_str().unwrap())]);
    c.start_node(1);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.leader_url();
    assert!(read_log(&c.log_path(1)).contains("CAIRN_TEST_CLOCK_FILE is set"), "an armed node must say so");

    // A key with 30 s to live disappears within a tick or two once the leader's clock jumps a
    // minute ahead: expiry follows the leader's (shifted) clock.
    let a = c.http.put(&url, "a", &json!({"value": 1, "ttlSeconds": 30})).await;
    assert_eq!(a.status, 200, "{a:?}");
    set_offset(&file, 60_000);
    let (http, u) = (&c.http, url.clone());
    until(deadline_in(10), "key a to expire after the clock jumped forward", async || {
        let r = http.try_get_query(&u, "a", "consistency=strong").await?;
        if r.status == 404 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    let b = c.http.put(&url, "b", &json!({"value": 2, "ttlSeconds": 30})).await;
    assert_eq!(b.status, 200, "{b:?}");
    let exp_b = expires_at(&b);
    assert!(exp_b > unix_now() + 80.0, "b is stamped by the clock a minute ahead: expiresAt {exp_b}");

    // The clock jumps back two minutes: the logical clock stays where the leader's stamps took
    // it, so a new key's expiresAt is no earlier than b's, and b stays.
    set_offset(&file, -60_000);
    let log = c.log_path(1);
    until(deadline_in(10), "the node to read the new offset", async || {
        if read_log(&log).contains("offset_ms=-60000") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let d = c.http.put(&url, "d", &json!({"value": 3, "ttlSeconds": 30})).await;
    assert_eq!(d.status, 200, "{d:?}");
    assert!(expires_at(&d) >= exp_b, "the logical clock went back: d expires at {} < {exp_b}", expires_at(&d));
    let still = c.http.get_query(&url, "b", "consistency=strong").await;
    assert_eq!(still.status, 200, "b must live on after the clock went back: {still:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_test_clock_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.clock");
    let mut c = Cluster::prepare(1);
    c.set_node_env(1, &[("CAIRN_TEST_CLOCK_FILE", missing.to_str().unwrap())]);
    c.start_node(1);
    let status = c.wait_for_exit(1, deadline_in(15)).await;
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(read_log(&c.log_path(1)).contains("CAIRN_TEST_CLOCK_FILE"), "the refusal must name the variable");
    assert!(!c.data_dir(1).exists(), "a refused start touches no data");
}

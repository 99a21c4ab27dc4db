//! Process lifecycle: SIGTERM stops a node cleanly (exit 0), even with a client holding a
//! connection half-open, its data survives a restart on the same data dir, and a data dir
//! written by another id refuses to start.

use crate::support::{deadline_in, free_port, run_cairn_once, Cluster};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_single_node_with_exit_code_zero() {
    let mut c = Cluster::single();
    c.wait_for_leader(deadline_in(15)).await;
    c.http.put(&c.url(1), "k", &json!({"value": 1})).await.ok();
    let status = c.terminate(1, deadline_in(10)).await;
    assert_eq!(status.code(), Some(0), "SIGTERM must be a clean exit, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_drain_timeout_despite_a_stalled_request() {
    use tokio::io::AsyncWriteExt;
    // Every per-connection limit is far longer than the test: only the drain timeout can end
    // the stalled request.
    let mut c = Cluster::single_with(&[
        "--drain-timeout-ms",
        "1000",
        "--body-timeout-ms",
        "600000",
        "--header-timeout-ms",
        "600000",
        "--idle-timeout-ms",
        "600000",
    ]);
    c.wait_for_leader(deadline_in(15)).await;
    let mut stalled = tokio::net::TcpStream::connect(c.addr(1)).await.unwrap();
    stalled.write_all(b"PUT /kv/items/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"value\":").await.unwrap();
    // Let the node take the head and start waiting for the body.
    c.http.put(&c.url(1), "other", &json!({"value": 1})).await.ok();
    let status = c.terminate(1, deadline_in(15)).await;
    assert_eq!(status.code(), Some(0), "SIGTERM with a stalled request must still exit cleanly, got {status}");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_data_dir_keeps_the_data() {
    let mut c = Cluster::single();
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let put = c.http.put(&url, "durable", &json!({"value": {"kept": true}})).await.ok();
    c.http.increment(&url, "count", Some(&json!({"delta": 41}))).await.ok();
    c.http.increment(&url, "count", None).await.ok();
    let status = c.terminate(1, deadline_in(10)).await;
    assert!(status.success(), "SIGTERM exit: {status}");

    c.restart(1);
    c.wait_for_leader(deadline_in(15)).await;
    let got = c.http.get(&url, "durable").await.ok();
    assert_eq!(got.data()["value"], json!({"kept": true}), "{got:?}");
    assert_eq!(got.version(), put.version(), "the version survives the restart: {got:?}");
    assert_eq!(c.http.get(&url, "count").await.ok().data()["value"], json!(42));
    // Still writable, with versions continuing past the old ones.
    let after = c.http.put(&url, "durable", &json!({"value": "changed"})).await.ok();
    assert!(after.version() > put.version(), "{after:?} vs {put:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_written_by_id_1_refuses_to_start_as_id_2() {
    let mut c = Cluster::single();
    c.wait_for_leader(deadline_in(15)).await;
    c.http.put(&c.url(1), "owned", &json!({"value": 1})).await.ok();
    let status = c.terminate(1, deadline_in(10)).await;
    assert!(status.success(), "SIGTERM exit: {status}");

    let args: Vec<String> = [
        "serve",
        "--id",
        "2",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--data-dir",
        &c.data_dir(1).display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let output = run_cairn_once(&args, deadline_in(15)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "starting as id 2 must fail; stderr:\n{stderr}");
    // The message names the ids involved: the word "id" plus the numbers 1 and 2 as
    // standalone tokens (timestamps never yield a bare "1" or "2" token).
    let tokens: Vec<&str> = stderr.split(|ch: char| !ch.is_ascii_alphanumeric()).collect();
    assert!(
        stderr.to_lowercase().contains("id") && tokens.contains(&"1") && tokens.contains(&"2"),
        "stderr must explain the id mismatch (1 vs 2):\n{stderr}"
    );
}

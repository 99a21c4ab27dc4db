//! Snapshots and WAL compaction on real processes: disk use stays bounded under a write load
//! many times larger than the live data, and a follower that missed more than the leader kept
//! in its log catches up by streaming a snapshot of over 100 MB.

use std::path::Path;

use crate::support::{deadline_in, until, Cluster};
use reqwest::Method;
use serde_json::json;

fn wal_bytes(dir: &Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut segments = 0;
    for e in std::fs::read_dir(dir.join("wal")).unwrap().flatten() {
        // The node purges segments while this runs: one listed a moment ago may be gone now,
        // and then it holds no bytes (this unwrap failed once on exactly that race).
        let len = match e.metadata() {
            Ok(m) => m.len(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => panic!("stat {}: {err}", e.path().display()),
        };
        bytes += len;
        segments += e.path().extension().is_some_and(|x| x == "seg") as usize;
    }
    (bytes, segments)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_stays_bounded_under_writes_far_larger_than_the_live_data() {
    let mut c =
        Cluster::single_with(&["--snapshot-logs", "100", "--snapshot-keep-logs", "0", "--wal-segment-bytes", "65536"]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let value = "v".repeat(1000);
    let mut peak = 0;
    let writers = 8;
    let rounds = 40;
    let per_round = 20;
    for _ in 0..rounds {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (http, url, value) = (c.http.clone(), url.clone(), value.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..per_round {
                    http.put(&url, &format!("k{}", (w * per_round + i) % 20), &json!({"value": value})).await.ok();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        peak = peak.max(wal_bytes(&c.data_dir(1)).0);
    }
    let written = (writers * rounds * per_round * 1000) as u64;
    let (end, segments) = wal_bytes(&c.data_dir(1));
    // 6.4 MB went through the log; a snapshot every 100 entries and 64 KiB segments keep the WAL
    // to a few segments beyond the entries since the last snapshot.
    assert!(peak < written / 3, "WAL peaked at {peak} bytes after {written} bytes of writes");
    assert!(end < written / 3, "WAL ended at {end} bytes after {written} bytes of writes");
    assert!(segments <= 20, "{segments} WAL segments remain");
    let m = c.http.must(Method::GET, &format!("{url}/metrics"), None, &[]).await;
    let built = m.text.lines().find(|l| l.starts_with("cairn_snapshots_built_total ")).unwrap();
    assert!(!built.ends_with(" 0"), "no snapshot was built: {built}");
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_a_snapshot_of_over_100_mb() {
    // Snapshots of this size are built while applies go on (src/sm/cut.rs), so the default
    // write timeout stands even though a build takes seconds in a debug build.
    let mut c = Cluster::start_with(
        3,
        &[
            "--snapshot-logs",
            "40",
            "--snapshot-keep-logs",
            "0",
            // openraft times AppendEntries out after one heartbeat interval; megabyte entries in a
            // debug build on a busy machine need more than the 100 ms default.
            "--heartbeat-ms",
            "500",
            "--election-min-ms",
            "3000",
            "--election-max-ms",
            "6000",
        ],
    );
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let lagging = c.follower_ids()[0];
    c.kill(lagging);
    // 130 values of ~1 MB each; the snapshot at entry ~120 alone holds over 100 MB, and none
    // of it is left in the log.
    // Megabyte writes in a debug build on a busy machine: a generous client timeout.
    let slow = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap();
    let body = serde_json::to_vec(&json!({"value": "x".repeat(1_000_000)})).unwrap();
    for i in 0..130 {
        let r = slow
            .put(format!("{}/kv/items/big{i:03}", c.url(leader)))
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        assert_eq!(r.status(), 200, "write {i}: {}", r.text().await.unwrap_or_default());
    }
    // Snapshots are built beside applies, so the last writes can be acknowledged before the
    // snapshot that covers them (every 40 entries: the one at about 120) is written, and
    // openraft checks its snapshot policy only when the commit index moves: if a slow build was
    // still running when the last write committed, no new build starts until the next write.
    // So small writes go on until the leader's snapshot covers 120 entries; the follower is
    // then sent a snapshot of over 100 MB rather than an older one.
    let (http, leader_url) = (&c.http, c.url(leader));
    let mut nudge = 0;
    until(deadline_in(120), "the leader's snapshot to cover the first 120 entries", async || {
        nudge += 1;
        http.try_put(&leader_url, &format!("nudge{nudge}"), &json!({"value": nudge})).await?;
        let m = http.send(Method::GET, &format!("{leader_url}/metrics"), None, &[]).await?;
        let index: u64 = m
            .text
            .lines()
            .find_map(|l| l.strip_prefix("cairn_raft_snapshot_index "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("no cairn_raft_snapshot_index")?;
        if index >= 120 {
            Ok(())
        } else {
            Err(format!("snapshot index {index}"))
        }
    })
    .await;
    c.restart(lagging);
    let (http, url) = (&c.http, c.url(lagging));
    until(deadline_in(240), "the lagging follower to serve the last key from its own state", async || {
        let r = http.try_get_query(&url, "big129", "consistency=stale").await?;
        if r.status == 200 && r.data()["value"].as_str().is_some_and(|v| v.len() == 1_000_000) {
            Ok(())
        } else {
            Err(format!("status {}", r.status))
        }
    })
    .await;
    let m = c.http.must(Method::GET, &format!("{url}/metrics"), None, &[]).await;
    let installed = m.text.lines().find(|l| l.starts_with("cairn_snapshots_installed_total ")).unwrap().to_string();
    assert!(!installed.ends_with(" 0"), "the follower caught up without a snapshot: {installed}");
    let snap = std::fs::metadata(c.data_dir(lagging).join("snapshots/current.snap")).unwrap().len();
    assert!(snap > 100_000_000, "the installed snapshot is only {snap} bytes");
    let first = c.http.get_query(&url, "big000", "consistency=stale").await.ok();
    assert_eq!(first.data()["value"].as_str().map(str::len), Some(1_000_000));
}

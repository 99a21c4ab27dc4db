//! Snapshots and WAL compaction on real processes: disk use stays bounded under a write load
//! many times larger than the live data.

mod support;

use std::path::Path;

use reqwest::Method;
use serde_json::json;
use support::{deadline_in, Cluster};

fn wal_bytes(dir: &Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut segments = 0;
    for e in std::fs::read_dir(dir.join("wal")).unwrap().flatten() {
        let len = e.metadata().unwrap().len();
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

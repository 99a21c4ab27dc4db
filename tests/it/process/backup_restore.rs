//! A backup taken under write load restores into a fresh three-node cluster with every key,
//! value and version it held, and the new cluster keeps growing versions past it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::{deadline_in, Cluster};
use serde_json::{json, Value};

fn cairn(args: &[&str]) -> std::process::Output {
    crate::support::cairn_command().args(args).output().expect("run cairn")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_into_a_new_cluster_with_every_key_and_version() {
    let mut old = Cluster::start(3);
    old.wait_for_leader(deadline_in(20)).await;
    for i in 0..200 {
        old.http.put(&old.leader_url(), &format!("k{i:03}"), &json!({"value": {"i": i}})).await.ok();
    }
    // Keep writing other keys while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let (http, url, flag) = (old.http.clone(), old.leader_url(), stop.clone());
    let load = tokio::spawn(async move {
        let mut n = 0u64;
        while !flag.load(Ordering::Relaxed) {
            let _ = http.try_put(&url, &format!("load{n}"), &json!({"value": n})).await;
            n += 1;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cairn.backup");
    let endpoints = old.ids().iter().map(|i| old.url(*i)).collect::<Vec<_>>().join(",");
    let out = cairn(&["backup", "--endpoints", &endpoints, "--out", file.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(out.status.success(), "backup failed: {}", String::from_utf8_lossy(&out.stderr));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a backup must be readable by its owner only, got {mode:o}");
    }
    let summary: Value = serde_json::from_slice(&out.stdout).expect("backup prints JSON");
    let backup_index = summary["lastIndex"].as_u64().unwrap();

    // What the old cluster held at (at least) the backup's index, via a full scan.
    let mut expected: Vec<(String, Value, String)> = Vec::new();
    for i in 0..200 {
        let r = old.http.get(&old.leader_url(), &format!("k{i:03}")).await.ok();
        expected.push((format!("k{i:03}"), r.data()["value"].clone(), r.data()["version"].as_str().unwrap().into()));
    }

    // A fresh cluster seeded from the file: same keys, values and versions.
    let mut new = Cluster::prepare(3);
    let peers = new.ids().iter().map(|i| format!("{i}={}", new.addr(*i))).collect::<Vec<_>>().join(",");
    for id in new.ids() {
        let out = cairn(&[
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--data-dir",
            new.data_dir(id).to_str().unwrap(),
            "--id",
            &id.to_string(),
            "--peers",
            &peers,
        ]);
        assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    for id in new.ids() {
        new.start_node(id);
    }
    new.wait_for_leader(deadline_in(30)).await;
    for (key, value, version) in &expected {
        let r = new.http.get(&new.leader_url(), key).await.ok();
        assert_eq!(&r.data()["value"], value, "{key}");
        assert_eq!(r.data()["version"].as_str().unwrap(), version, "{key}");
    }
    // The new log continues after the backup's index.
    let w = new.http.put(&new.leader_url(), "after-restore", &json!({"value": 1})).await.ok();
    assert!(w.version() > backup_index, "new version {} must exceed the backup's {backup_index}", w.version());

    // Restoring into a non-empty dir, or from a damaged file, is refused.
    let again = cairn(&[
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        new.data_dir(1).to_str().unwrap(),
        "--id",
        "1",
        "--peers",
        &peers,
    ]);
    assert!(!again.status.success());
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let damaged = dir.path().join("damaged.backup");
    std::fs::write(&damaged, bytes).unwrap();
    let fresh = dir.path().join("fresh");
    let bad = cairn(&[
        "restore",
        "--from",
        damaged.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
        "--id",
        "1",
        "--peers",
        &peers,
    ]);
    assert!(!bad.status.success(), "a damaged backup must be refused");
}

//! Certificate reload without a restart: a node re-reads `--tls-cert`, `--tls-key` and
//! `--peer-ca` on SIGHUP and when the files change, new handshakes get the new material,
//! connections already open carry on, and a load running through the rotation sees no failed
//! request. A reload that fails keeps the old material and is counted in `/metrics`.
//!
//! Which certificate a node serves is read from a handshake of the test's own
//! (`served_certificate`), compared byte for byte with the file the test wrote.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use reqwest::Method;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::support::{deadline_in, read_log, served_certificate, until, write_atomically, Cluster, Http, Leaf, Pki};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Where node `id`'s certificate and key live; a rotation writes over them.
fn node_files(dir: &Path, id: u64) -> (PathBuf, PathBuf) {
    (dir.join(format!("node{id}.pem")), dir.join(format!("node{id}.key")))
}

/// `n` TLS nodes with mutual TLS against the CA bundle at `peer_ca`, each serving `leaves[i]`
/// from `files`, with a test client trusting `roots`; waits for a leader.
async fn tls_cluster(n: usize, files: &Path, leaves: &[Leaf], peer_ca: &Path, roots: &[&str]) -> Cluster {
    let mut c = Cluster::prepare(n);
    c.scheme = "https";
    c.http = Http::with_trust(roots, true);
    // These tests count every failed request against the reload. With the default election
    // timeout a follower stands after 600 ms without a heartbeat, and a test machine busy with
    // other tests' TLS handshakes can starve heartbeats that long: an election then fails
    // requests for reasons that have nothing to do with certificates (seen under `cargo test`
    // with busy cores). The longer timeouts keep leadership out of what these tests measure;
    // elections under load are measured by scripts/failover.sh and the chaos harness.
    c.extra_args = vec![
        "--peer-ca".into(),
        s(peer_ca),
        "--election-min-ms".into(),
        "1000".into(),
        "--election-max-ms".into(),
        "2000".into(),
    ];
    for (id, leaf) in (1..).zip(leaves) {
        let (cert, key) = node_files(files, id);
        leaf.write_to(&cert, &key);
        c.set_node_args(id, &["--tls-cert", &s(&cert), "--tls-key", &s(&key)]);
        c.start_node(id);
    }
    c.wait_for_leader(deadline_in(30)).await;
    c
}

/// The value of one sample of node `url`'s `/metrics`, e.g.
/// `cairn_tls_reloads_total{result="ok"}`.
async fn metric(http: &Http, url: &str, series: &str) -> Result<f64, String> {
    let m = http.send(Method::GET, &format!("{url}/metrics"), None, &[]).await?;
    m.text
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {series} sample in /metrics"))
}

/// Waits until `series` on `url` reaches `want` exactly (counters only grow, so an overshoot
/// fails at once).
async fn wait_metric(http: &Http, url: &str, series: &str, want: f64, deadline: Instant) {
    until(deadline, &format!("{series} = {want} on {url}"), async || {
        let got = metric(http, url, series).await?;
        if got == want {
            Ok(())
        } else if got > want {
            panic!("{series} on {url} is {got}, past the expected {want}")
        } else {
            Err(format!("{series} = {got}"))
        }
    })
    .await;
}

/// Waits until node `addr` serves `want` to a client trusting `roots`.
async fn wait_served(addr: &str, roots: &[&str], want: &Leaf, deadline: Instant) {
    until(deadline, &format!("{addr} to serve the new certificate"), async || {
        let served = served_certificate(addr, roots).await?;
        if served == want.der {
            Ok(())
        } else {
            Err("still the old certificate".to_string())
        }
    })
    .await;
}

const OK_RELOADS: &str = "cairn_tls_reloads_total{result=\"ok\"}";
const FAILED_RELOADS: &str = "cairn_tls_reloads_total{result=\"error\"}";

/// Clients writing and reading in a loop until stopped, across the given nodes: one task per
/// client. What did not succeed is kept for the assertion.
struct Load {
    stop: Arc<AtomicBool>,
    succeeded: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(clients: Vec<Http>, urls: Vec<String>) -> Load {
        let (stop, succeeded) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let tasks = (0..)
            .zip(clients)
            .map(|(n, http)| {
                let (stop, succeeded, urls) = (stop.clone(), succeeded.clone(), urls.clone());
                tokio::spawn(async move {
                    let mut failed = Vec::new();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        match write_then_read(&http, &urls[i % urls.len()], &format!("load-{n}-{i}")).await {
                            Ok(()) => _ = succeeded.fetch_add(1, Ordering::Relaxed),
                            Err(e) => failed.push(e),
                        }
                        i += 1;
                    }
                    failed
                })
            })
            .collect();
        Load { stop, succeeded, tasks }
    }

    /// Waits until `n` more requests have succeeded from now on.
    async fn progress(&self, n: u64, deadline: Instant) {
        let target = self.succeeded.load(Ordering::Relaxed) + n;
        until(deadline, &format!("{n} more successful requests"), async || {
            let done = self.succeeded.load(Ordering::Relaxed);
            if done >= target {
                Ok(())
            } else {
                Err(format!("{done} of {target}"))
            }
        })
        .await;
    }

    /// Stops the clients; returns how many requests succeeded and every failure.
    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failed = Vec::new();
        for t in self.tasks {
            failed.extend(t.await.expect("load task"));
        }
        (self.succeeded.load(Ordering::Relaxed), failed)
    }
}

/// A write, then a read of it from the same node (which waits for the write to be applied).
async fn write_then_read(http: &Http, url: &str, key: &str) -> Result<(), String> {
    let put = http.try_put(url, key, &json!({"value": key})).await?;
    if put.status != 200 {
        return Err(format!("PUT {url} {key}: {put:?}"));
    }
    let got = http.try_get_query(url, key, &format!("minVersion={}", put.version())).await?;
    if got.status != 200 || got.data()["value"] != key {
        return Err(format!("GET {url} {key}: {got:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_every_nodes_certificate_under_load_without_a_failed_request() {
    let ca = Pki::new("cairn test CA");
    let files = tempfile::tempdir().expect("files tempdir");
    let leaves: Vec<Leaf> = (1..=3).map(|id| ca.leaf(&format!("node{id}"))).collect();
    let mut c = tls_cluster(3, files.path(), &leaves, &ca.ca_path(), &[&ca.ca_pem()]).await;
    let urls: Vec<String> = c.ids().iter().map(|id| c.url(*id)).collect();
    // One client on kept-alive connections, one making a new handshake for every request.
    let load =
        Load::start(vec![Http::with_trust(&[&ca.ca_pem()], true), Http::with_trust(&[&ca.ca_pem()], false)], urls);
    load.progress(20, deadline_in(30)).await;

    let rotated: Vec<Leaf> = (1..=3).map(|id| ca.leaf(&format!("node{id} rotated"))).collect();
    for (id, leaf) in (1..).zip(&rotated) {
        let (cert, key) = node_files(files.path(), id);
        leaf.write_to(&cert, &key);
        c.hangup(id).expect("SIGHUP a node");
    }
    for (id, leaf) in (1..).zip(&rotated) {
        wait_served(&c.addr(id), &[&ca.ca_pem()], leaf, deadline_in(20)).await;
    }
    // New handshakes, on the new certificates, keep succeeding.
    load.progress(20, deadline_in(30)).await;
    let (succeeded, failed) = load.stop().await;
    assert!(failed.is_empty(), "{} of {} requests failed during the rotation: {failed:#?}", failed.len(), succeeded);

    c.assert_running();
    for id in c.ids() {
        let url = c.url(id);
        assert_eq!(metric(&c.http, &url, OK_RELOADS).await, Ok(1.0), "node {id}");
        assert_eq!(metric(&c.http, &url, FAILED_RELOADS).await, Ok(0.0), "node {id}");
    }
}

/// The three steps of moving to a new CA, each a SIGHUP on every node instead of a rolling
/// restart: a bundle with both CAs, then certificates from the new one, then the new CA alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_through_an_overlap_bundle_keeps_clients_and_peers_connected() {
    let (old, new) = (Pki::new("old CA"), Pki::new("new CA"));
    let files = tempfile::tempdir().expect("files tempdir");
    let bundle = files.path().join("peer-ca.pem");
    write_atomically(&bundle, &old.ca_pem());
    let roots = [old.ca_pem(), new.ca_pem()];
    let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
    let leaves: Vec<Leaf> = (1..=3).map(|id| old.leaf(&format!("node{id}"))).collect();
    let mut c = tls_cluster(3, files.path(), &leaves, &bundle, &roots).await;
    let urls: Vec<String> = c.ids().iter().map(|id| c.url(*id)).collect();
    let load = Load::start(vec![Http::with_trust(&roots, true), Http::with_trust(&roots, false)], urls);
    load.progress(20, deadline_in(30)).await;

    // 1. Every node trusts both CAs before any serves a certificate from the new one.
    write_atomically(&bundle, &format!("{}{}", old.ca_pem(), new.ca_pem()));
    for id in c.ids() {
        c.hangup(id).expect("SIGHUP a node");
    }
    for id in c.ids() {
        wait_metric(&c.http, &c.url(id), OK_RELOADS, 1.0, deadline_in(20)).await;
    }
    load.progress(10, deadline_in(30)).await;

    // 2. Certificates from the new CA.
    let rotated: Vec<Leaf> = (1..=3).map(|id| new.leaf(&format!("node{id} new CA"))).collect();
    for (id, leaf) in (1..).zip(&rotated) {
        let (cert, key) = node_files(files.path(), id);
        leaf.write_to(&cert, &key);
        c.hangup(id).expect("SIGHUP a node");
    }
    for (id, leaf) in (1..).zip(&rotated) {
        wait_served(&c.addr(id), &roots, leaf, deadline_in(20)).await;
    }
    load.progress(10, deadline_in(30)).await;

    // 3. The old CA goes.
    write_atomically(&bundle, &new.ca_pem());
    for id in c.ids() {
        c.hangup(id).expect("SIGHUP a node");
    }
    for id in c.ids() {
        wait_metric(&c.http, &c.url(id), OK_RELOADS, 3.0, deadline_in(20)).await;
    }
    load.progress(20, deadline_in(30)).await;
    let (succeeded, failed) = load.stop().await;
    assert!(failed.is_empty(), "{} of {} requests failed during the rotation: {failed:#?}", failed.len(), succeeded);

    // The servers' peer check follows the bundle: a peer certificate from the old CA is now
    // refused at the handshake, one from the new CA passes (and fails as the garbage RPC it is).
    let leader = c.leader();
    let vote = format!("{}/raft/vote", c.url(leader));
    let stale_peer = Http::with_tls(&new.ca_pem(), Some(&old.identity("old peer")));
    let refused = stale_peer.send(Method::POST, &vote, Some(b"x".to_vec()), &[]).await;
    assert!(refused.is_err(), "a peer certificate from the dropped CA must fail the handshake: {:?}", refused.ok());
    let peer = Http::with_tls(&new.ca_pem(), Some(&new.identity("new peer")));
    assert_eq!(peer.must(Method::POST, &vote, Some(b"x".to_vec()), &[]).await.status, 400);

    // The peers' client side: a follower restarted now trusts only the new CA, and every
    // connection to or from it is a new handshake. The leader must dial it with its new
    // certificate and trust the follower's; the follower's forwarded write must be accepted.
    let follower = c.follower_ids()[0];
    c.kill(follower);
    c.restart(follower);
    let put = c.http.put(&c.url(leader), "after-rotation", &json!({"value": "replicated"})).await.ok();
    let (http, url) = (&c.http, c.url(follower));
    until(deadline_in(30), "the restarted follower to apply a write over new peer connections", async || {
        let got = http.try_get_query(&url, "after-rotation", &format!("minVersion={}", put.version())).await?;
        match got.status {
            200 if got.header("x-cairn-node") == Some(follower.to_string().as_str()) => Ok(()),
            _ => Err(format!("{got:?}")),
        }
    })
    .await;
    let forwarded = c.http.put(&url, "forwarded", &json!({"value": 1})).await.ok();
    assert_eq!(forwarded.header("x-cairn-node"), Some(leader.to_string().as_str()), "{forwarded:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_reloaded_without_a_signal_peer_ca_included() {
    let (ca, second) = (Pki::new("cairn test CA"), Pki::new("second CA"));
    let files = tempfile::tempdir().expect("files tempdir");
    let bundle = files.path().join("peer-ca.pem");
    write_atomically(&bundle, &ca.ca_pem());
    let c = tls_cluster(1, files.path(), &[ca.leaf("node1")], &bundle, &[&ca.ca_pem()]).await;
    let url = c.url(1);
    let load = Load::start(vec![Http::with_trust(&[&ca.ca_pem()], false)], vec![url.clone()]);
    load.progress(10, deadline_in(30)).await;

    let rotated = ca.leaf_expiring("node1 rotated", (2041, 2, 3));
    let (cert, key) = node_files(files.path(), 1);
    rotated.write_to(&cert, &key);
    wait_served(&c.addr(1), &[&ca.ca_pem()], &rotated, deadline_in(30)).await;
    let not_after = metric(&c.http, &url, "cairn_tls_cert_not_after_seconds").await;
    assert_eq!(not_after, Ok(rotated.not_after as f64), "the gauge follows the served certificate");

    // The peer CA too: a peer certificate from the second CA is refused until the bundle has it.
    let vote = format!("{url}/raft/vote");
    let peer = Http::with_tls(&ca.ca_pem(), Some(&second.identity("peer")));
    let refused = peer.send(Method::POST, &vote, Some(b"x".to_vec()), &[]).await;
    assert!(refused.is_err(), "not yet trusted: {:?}", refused.ok());
    write_atomically(&bundle, &format!("{}{}", ca.ca_pem(), second.ca_pem()));
    until(deadline_in(30), "a peer certificate from the second CA to be accepted", async || {
        let resp = peer.send(Method::POST, &vote, Some(b"x".to_vec()), &[]).await?;
        if resp.status == 400 {
            Ok(())
        } else {
            Err(format!("{resp:?}"))
        }
    })
    .await;

    load.progress(10, deadline_in(30)).await;
    let (succeeded, failed) = load.stop().await;
    assert!(failed.is_empty(), "{} of {} requests failed during the rotation: {failed:#?}", failed.len(), succeeded);
    // One reload per change, even though the certificate and key were written one after the
    // other: a change is loaded once it has stopped changing.
    assert_eq!(metric(&c.http, &url, OK_RELOADS).await, Ok(2.0));
    assert_eq!(metric(&c.http, &url, FAILED_RELOADS).await, Ok(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_old_certificate_and_is_counted() {
    let ca = Pki::new("cairn test CA");
    let files = tempfile::tempdir().expect("files tempdir");
    let bundle = files.path().join("peer-ca.pem");
    write_atomically(&bundle, &ca.ca_pem());
    let original = ca.leaf("node1");
    let mut c = tls_cluster(1, files.path(), std::slice::from_ref(&original), &bundle, &[&ca.ca_pem()]).await;
    let (url, addr, roots) = (c.url(1), c.addr(1), [ca.ca_pem()]);
    let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
    let (cert, key) = node_files(files.path(), 1);
    let still_original = async |c: &mut Cluster, after: &str| {
        c.assert_running();
        let served = served_certificate(&addr, &roots).await.expect("a handshake");
        assert!(served == original.der, "after {after}: the old certificate must still be served");
        c.http.put(&url, "still-serving", &json!({"value": after})).await.ok();
    };

    // Garbage in the certificate file, then SIGHUP.
    write_atomically(&cert, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    c.hangup(1).expect("SIGHUP the node");
    wait_metric(&c.http, &url, FAILED_RELOADS, 1.0, deadline_in(20)).await;
    still_original(&mut c, "a garbage certificate").await;
    let log = read_log(&c.log_path(1));
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains("TLS reload failed") && l.contains(&s(&cert))),
        "a WARN line naming the file: {log}"
    );

    // A certificate whose key is not in the key file, found by the file watch.
    write_atomically(&cert, &ca.leaf("node1 other key").cert_pem);
    wait_metric(&c.http, &url, FAILED_RELOADS, 2.0, deadline_in(30)).await;
    still_original(&mut c, "a certificate without its key").await;

    // A good certificate and key, but the peer CA file is gone: nothing is half applied.
    let rotated = ca.leaf("node1 rotated");
    std::fs::remove_file(&bundle).expect("remove the peer CA file");
    rotated.write_to(&cert, &key);
    c.hangup(1).expect("SIGHUP the node");
    wait_metric(&c.http, &url, FAILED_RELOADS, 3.0, deadline_in(20)).await;
    still_original(&mut c, "a missing peer CA file").await;
    assert_eq!(metric(&c.http, &url, OK_RELOADS).await, Ok(0.0));

    // Put right, the next change is picked up.
    write_atomically(&bundle, &ca.ca_pem());
    wait_served(&addr, &roots, &rotated, deadline_in(30)).await;
    assert_eq!(metric(&c.http, &url, OK_RELOADS).await, Ok(1.0));
    assert_eq!(metric(&c.http, &url, FAILED_RELOADS).await, Ok(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_leaves_a_node_without_tls_running() {
    let mut c = Cluster::single();
    c.wait_for_leader(deadline_in(20)).await;
    c.hangup(1).expect("SIGHUP the node");
    let log = c.log_path(1);
    until(deadline_in(10), "the node to log the SIGHUP", async || {
        if read_log(&log).contains("no TLS files to reload") {
            Ok(())
        } else {
            Err("not logged yet".to_string())
        }
    })
    .await;
    c.assert_running();
    c.http.put(&c.url(1), "after-sighup", &json!({"value": 1})).await.ok();
}

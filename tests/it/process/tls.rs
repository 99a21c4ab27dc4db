//! TLS: HTTPS for clients, mutual TLS between peers (`--peer-ca`), the CLI's `--cacert`, and
//! the startup errors of bad TLS settings. Certificates come from `support/pki.rs`: one cluster
//! CA, one certificate per node (IP SAN 127.0.0.1, usable as server and client), and a
//! stranger CA whose certificates must be refused. Reloading them is `tls_reload.rs`.

use std::path::Path;

use crate::support::{deadline_in, free_port, read_log, run_cairn_once, until, Cluster, Http, Pki};
use reqwest::Method;
use serde_json::json;

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A single node serving HTTPS with mutual TLS for peers, and its test client (trusting the CA).
async fn single_mtls_node(pki: &Pki) -> Cluster {
    let (cert, key) = pki.issue("node1");
    let (cert, key, ca) = (s(&cert), s(&key), s(&pki.ca_path()));
    let mut c = Cluster::single_with(&["--tls-cert", &cert, "--tls-key", &key, "--peer-ca", &ca]);
    c.scheme = "https";
    c.http = Http::with_tls(&pki.ca_pem(), None);
    c.wait_for_leader(deadline_in(20)).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_cluster_replicates_and_forwards() {
    let pki = Pki::new("cairn test CA");
    let mut c = Cluster::prepare(3);
    c.scheme = "https";
    c.http = Http::with_tls(&pki.ca_pem(), None);
    c.extra_args = vec!["--peer-ca".into(), s(&pki.ca_path())];
    for id in 1..=3 {
        let (cert, key) = pki.issue(&format!("node{id}"));
        c.set_node_args(id, &["--tls-cert", &s(&cert), "--tls-key", &s(&key)]);
        c.start_node(id);
    }
    // Electing a leader at all needs vote RPCs over mutual TLS.
    let leader = c.wait_for_leader(deadline_in(30)).await;
    let leader_url = c.leader_url();
    assert!(leader_url.starts_with("https://"), "{leader_url}");

    let version = c.http.put(&leader_url, "k", &json!({"value": "over tls"})).await.ok().version();
    for follower in c.follower_ids() {
        // Answered by the follower itself once it applied the write: replication over mTLS.
        let got = c.http.get_query(&c.url(follower), "k", &format!("minVersion={version}")).await.ok();
        assert_eq!(got.data()["value"], "over tls", "{got:?}");
        assert_eq!(got.header("x-cairn-node"), Some(follower.to_string().as_str()), "{got:?}");
    }

    // A write sent to a follower is proxied to the leader over TLS.
    let follower = c.follower_ids()[0];
    let put = c.http.put(&c.url(follower), "fwd", &json!({"value": 7})).await.ok();
    assert_eq!(put.header("x-cairn-node"), Some(leader.to_string().as_str()), "answered by the leader: {put:?}");
    let got = c.http.get(&leader_url, "fwd").await.ok();
    assert_eq!(got.data()["value"], 7, "{got:?}");
}

/// A follower whose certificate lacks the client-auth usage hears from its leader (the leader
/// dials it) but cannot dial the leader: it is not ready, and a write through it is a definite
/// 502 `leader_unreachable`, not an unknown outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_cannot_reach_its_leader_is_not_ready_and_fails_writes_definitely() {
    let pki = Pki::new("cairn test CA");
    let mut c = Cluster::prepare(3);
    c.scheme = "https";
    c.http = Http::with_tls(&pki.ca_pem(), None);
    c.extra_args = vec!["--peer-ca".into(), s(&pki.ca_path())];
    for id in 1..=3 {
        let (cert, key) = if id == 3 { pki.issue_server_only("node3") } else { pki.issue(&format!("node{id}")) };
        c.set_node_args(id, &["--tls-cert", &s(&cert), "--tls-key", &s(&key)]);
        c.start_node(id);
    }
    let leader = c.wait_for_leader(deadline_in(30)).await;
    assert_ne!(leader, 3, "node 3 cannot win a vote: it cannot dial its peers");
    let (http, url) = (&c.http, c.url(3));
    until(deadline_in(30), "node 3 to follow the leader and say it cannot reach it", async || {
        let s = http.status(&url).await?;
        let ready = http.send(Method::GET, &format!("{url}/ready"), None, &[]).await?;
        if s["leader"] == json!(leader) && ready.status == 503 && ready.text.contains("cannot reach the leader") {
            Ok(())
        } else {
            Err(format!("status {s}, ready {ready:?}"))
        }
    })
    .await;
    let put = c.http.send(Method::PUT, &format!("{url}/kv/items/k"), Some(br#"{"value":1}"#.to_vec()), &[]).await;
    let put = put.unwrap_or_else(|e| panic!("{e}"));
    put.assert_error(502, "leader_unreachable");
    for id in [1, 2] {
        let r = c.http.send(Method::GET, &format!("{}/ready", c.url(id)), None, &[]).await.unwrap();
        assert_eq!(r.status, 200, "node {id}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_untrusting_clients_are_refused_and_raft_needs_a_peer_certificate() {
    let pki = Pki::new("cairn test CA");
    let c = single_mtls_node(&pki).await;
    let addr = c.addr(1);
    let https = c.url(1);

    // A connection that never starts its handshake must not hold up anyone else: every request
    // below is made while it stays open.
    let _stalled = tokio::net::TcpStream::connect(&addr).await.expect("open a silent TCP connection");

    // Positive control: a client trusting the CA is served.
    c.http.must(Method::GET, &format!("{https}/health"), None, &[]).await.ok();

    let plain = Http::new().send(Method::GET, &format!("http://{addr}/health"), None, &[]).await;
    assert!(plain.is_err(), "plain HTTP to a TLS node must fail: {:?}", plain.map(|r| r.status));

    let stranger = Http::new().send(Method::GET, &format!("{https}/health"), None, &[]).await;
    stranger.expect_err("a client that does not trust the CA must fail");
    // ... and it failed for the certificate: the client said so to the node.
    let log = c.log_path(1);
    until(deadline_in(10), "the node to log the refused handshake", async || {
        let text = read_log(&log);
        if text.contains("TLS handshake failed") && text.contains("UnknownCA") {
            Ok(())
        } else {
            Err("no UnknownCA handshake failure logged yet".to_string())
        }
    })
    .await;

    // /raft/* without a client certificate: 403 in the error envelope.
    let vote = format!("{https}/raft/vote");
    c.http.must(Method::POST, &vote, Some(b"x".to_vec()), &[]).await.assert_error(403, "peer_certificate_required");

    // With a certificate from the cluster CA the request passes the check (and then fails as
    // the garbage RPC body it is).
    let peer = Http::with_tls(&pki.ca_pem(), Some(&pki.identity("peer")));
    let resp = peer.must(Method::POST, &vote, Some(b"x".to_vec()), &[]).await;
    assert_eq!(resp.status, 400, "a verified peer passes the certificate check: {resp:?}");

    // A certificate from another CA is refused at the handshake: no HTTP answer at all.
    let other = Pki::new("stranger CA");
    let impostor = Http::with_tls(&pki.ca_pem(), Some(&other.identity("impostor")));
    let refused = impostor.send(Method::POST, &vote, Some(b"x".to_vec()), &[]).await;
    assert!(refused.is_err(), "a client certificate from another CA must fail the handshake: {:?}", refused.ok());
    // The node is still serving after all of that.
    c.http.must(Method::GET, &format!("{https}/health"), None, &[]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_talks_https_with_cacert_and_fails_clearly_without_it() {
    let pki = Pki::new("cairn test CA");
    let c = single_mtls_node(&pki).await;
    let endpoint = c.url(1);
    let ca = s(&pki.ca_path());
    let cli = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<String>>();

    let put = run_cairn_once(
        &cli(&["kv", "put", "greeting", "\"hi\"", "--endpoints", &endpoint, "--cacert", &ca]),
        deadline_in(20),
    )
    .await;
    assert!(put.status.success(), "put: {}", String::from_utf8_lossy(&put.stderr));
    let get =
        run_cairn_once(&cli(&["kv", "get", "greeting", "--endpoints", &endpoint, "--cacert", &ca]), deadline_in(20))
            .await;
    assert!(get.status.success(), "get: {}", String::from_utf8_lossy(&get.stderr));
    assert!(String::from_utf8_lossy(&get.stdout).contains("\"hi\""), "{}", String::from_utf8_lossy(&get.stdout));

    // The bench drives the load through its own HTTP client, which must speak TLS as well.
    let bench = run_cairn_once(
        &cli(&[
            "bench",
            "--endpoints",
            &endpoint,
            "--cacert",
            &ca,
            "--workload",
            "mixed:50/50",
            "--clients",
            "2",
            "--keys",
            "20",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--json",
        ]),
        deadline_in(30),
    )
    .await;
    let report = String::from_utf8_lossy(&bench.stdout);
    assert!(bench.status.success(), "bench over https: {report} {}", String::from_utf8_lossy(&bench.stderr));
    assert!(report.contains("\"errors\":{\"total\":0,"), "{report}");

    let untrusted = run_cairn_once(&cli(&["kv", "get", "greeting", "--endpoints", &endpoint]), deadline_in(20)).await;
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(3), "unreachable exit code: {stderr}");
    assert!(stderr.contains("certificate") && stderr.contains("--cacert"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_settings_are_clear_startup_errors() {
    let pki = Pki::new("cairn test CA");
    let (cert, key) = pki.issue("node1");
    let data = tempfile::tempdir().expect("data tempdir");
    let serve = |extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--data-dir".into(),
            s(&data.path().join("d")),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let fails = async |args: Vec<String>, needle: &str| {
        let out = run_cairn_once(&args, deadline_in(20)).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} should fail to start");
        assert!(stderr.contains(needle), "{args:?}: stderr should name {needle:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };

    fails(serve(&["--tls-cert", &s(&cert)]), "--tls-key").await;
    fails(serve(&["--tls-key", &s(&key)]), "--tls-cert").await;
    fails(serve(&["--peer-ca", &s(&pki.ca_path())]), "--peer-ca").await;
    let missing = pki.dir.path().join("missing.pem");
    fails(serve(&["--tls-cert", &s(&missing), "--tls-key", &s(&key)]), &s(&missing)).await;
    // The key file given as the certificate: named, not a panic.
    fails(serve(&["--tls-cert", &s(&key), "--tls-key", &s(&key)]), &s(&key)).await;

    // The same settings from a config file (TOML keys are the flag names).
    let cfg = pki.dir.path().join("cairn.toml");
    std::fs::write(&cfg, format!("tls_cert = {:?}\n", s(&cert))).expect("write config");
    fails(serve(&["--config", &s(&cfg)]), "--tls-key").await;
}

/// `CAIRN_TLS_*` variables configure a node like the flags do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_come_from_the_environment_too() {
    let pki = Pki::new("cairn test CA");
    let (cert, key) = pki.issue("node1");
    let data = tempfile::tempdir().expect("data tempdir");
    let port = free_port();
    let child = crate::support::cairn_command()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", &s(&data.path().join("d"))])
        .env("CAIRN_TLS_CERT", &cert)
        .env("CAIRN_TLS_KEY", &key)
        .env("CAIRN_PEER_CA", pki.ca_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cairn serve");
    let _reap = Reap(child);
    let http = Http::with_tls(&pki.ca_pem(), None);
    let url = format!("https://127.0.0.1:{port}/raft/vote");
    let resp = until(deadline_in(20), "the node to serve HTTPS", async || {
        http.send(Method::POST, &url, Some(b"x".to_vec()), &[]).await
    })
    .await;
    resp.assert_error(403, "peer_certificate_required");
}

/// Kills and reaps the one child it holds, however the test ends.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

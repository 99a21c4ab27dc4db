//! Watches across a 3-node cluster of real processes: a stream resumed on another node with
//! `Last-Event-ID` gets exactly the events it missed, and a follower that caught up by
//! installing a snapshot refuses (410) to stream across the hole in its history while the
//! leader still serves the same resume point.

use std::time::Duration;

use crate::support::sse;
use crate::support::{deadline_in, until, Cluster, Http};
use reqwest::Method;
use serde_json::json;

async fn put_version(http: &Http, url: &str, key: &str, value: u64) -> u64 {
    let r = http
        .must(
            Method::PUT,
            &crate::support::item_url(url, key),
            Some(json!({"value": value}).to_string().into_bytes()),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.version()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_on_another_node_gets_exactly_the_events_it_missed() {
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let followers = c.follower_ids();
    let (a, b) = (followers[0], followers[1]);
    let leader_url = c.url(leader);
    let mut first = sse::open(&format!("{}/kv/watch?prefix=w/", c.url(a)), &[]).await.expect("watch on a follower");
    let mut written = Vec::new();
    for i in 0..20 {
        let key = format!("w/{i:02}");
        written.push((put_version(&c.http, &leader_url, &key, i).await, key));
        put_version(&c.http, &leader_url, &format!("other/{i}"), i).await;
    }
    let seen = first.changes(10, deadline_in(20)).await;
    let want: Vec<(u64, Vec<(String, String)>)> =
        written.iter().map(|(v, k)| (*v, vec![("set".to_string(), k.clone())])).collect();
    assert_eq!(seen, want[..10].to_vec(), "the follower streams the leader's writes under their indexes");
    drop(first);
    let resume_at = seen[9].0;
    for i in 20..30 {
        let key = format!("w/{i:02}");
        written.push((put_version(&c.http, &leader_url, &key, i).await, key));
    }
    let want: Vec<(u64, Vec<(String, String)>)> =
        written.iter().map(|(v, k)| (*v, vec![("set".to_string(), k.clone())])).collect();
    let mut resumed =
        sse::open(&format!("{}/kv/watch?prefix=w/", c.url(b)), &[("last-event-id", &resume_at.to_string())])
            .await
            .expect("resume on the other follower");
    let rest = resumed.changes(20, deadline_in(20)).await;
    assert_eq!(rest, want[10..].to_vec(), "exactly the missed events, none twice, none skipped");
    // And nothing more: the next event, if any, is not a change of these keys.
    let extra = resumed.changes(1, std::time::Instant::now() + Duration::from_millis(1_500)).await;
    assert!(extra.is_empty(), "an event after the last write: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_installed_a_snapshot_refuses_to_stream_across_its_hole() {
    let mut c = Cluster::start_with(3, &["--snapshot-logs", "40", "--snapshot-keep-logs", "0"]);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let leader_url = c.url(leader);
    let early = put_version(&c.http, &leader_url, "h/first", 0).await;
    let lagging = c.follower_ids()[0];
    c.kill(lagging);
    for i in 0..60 {
        put_version(&c.http, &leader_url, &format!("h/{i:02}"), i).await;
    }
    // Until the leader's snapshot covers those writes, so the restarted follower gets it.
    let http = c.http.clone();
    let (http, url) = (&http, leader_url.clone());
    let mut nudge = 0;
    until(deadline_in(60), "the leader's snapshot to pass the early write", async || {
        nudge += 1;
        http.try_put(&url, &format!("nudge{nudge}"), &json!({"value": nudge})).await?;
        let m = http.send(Method::GET, &format!("{url}/metrics"), None, &[]).await?;
        let purged: u64 = m
            .text
            .lines()
            .find_map(|l| l.strip_prefix("cairn_raft_purged_index "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if purged > early + 5 {
            Ok(())
        } else {
            Err(format!("purged index {purged}"))
        }
    })
    .await;
    c.restart(lagging);
    let lag_url = c.url(lagging);
    until(deadline_in(60), "the restarted follower to install the snapshot", async || {
        let m = http.send(Method::GET, &format!("{lag_url}/metrics"), None, &[]).await?;
        if m.text.lines().any(|l| l.starts_with("cairn_snapshots_installed_total ") && !l.ends_with(" 0")) {
            Ok(())
        } else {
            Err("no snapshot installed yet".into())
        }
    })
    .await;
    match sse::open(&format!("{lag_url}/kv/watch?prefix=h/&after={early}"), &[]).await {
        Err((410, body)) => {
            assert_eq!(body["error"]["code"], "compacted", "{body}");
            let compacted: u64 = body["error"]["compactedIndex"].as_str().unwrap().parse().unwrap();
            assert!(compacted > early, "the floor is the snapshot's index: {body}");
        }
        other => panic!("the follower must refuse to stream across its hole, got {:?}", other.err()),
    }
    // The leader kept its history: the same resume point streams there, from the next write.
    let mut s = sse::open(&format!("{leader_url}/kv/watch?prefix=h/&after={early}"), &[]).await.expect("leader");
    let got = s.changes(1, deadline_in(20)).await;
    assert_eq!(got.first().map(|(_, ops)| ops[0].1.as_str()), Some("h/00"), "{got:?}");
}

/// `cairn watch` follows a stream across endpoints: the node it reads from is killed, and it
/// goes on at the next one with the last id, printing every change exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_watch_goes_on_at_the_next_endpoint_without_a_gap_or_a_repeat() {
    use std::io::BufRead;
    let mut c = Cluster::start(3);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let followers = c.follower_ids();
    // The first endpoint is a follower: the one to kill. The leader keeps taking writes.
    let endpoints = format!("{},{},{}", c.url(followers[0]), c.url(followers[1]), c.url(leader));
    let list = c.http.must(Method::GET, &format!("{}/kv/items?prefix=cli/", c.url(leader)), None, &[]).await.ok();
    let after = list.header("x-cairn-index").unwrap().to_string();
    let mut cli = crate::support::cairn_command()
        .args(["watch", "cli/", "--values", "--after", &after, "--endpoints", &endpoints])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cairn watch");
    let stdout = cli.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_lines = |n: usize, secs: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::new();
        while out.len() < n {
            match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(l) => out.push(serde_json::from_str::<serde_json::Value>(&l).expect("a JSON line")),
                Err(_) => break,
            }
        }
        out
    };
    let leader_url = c.url(leader);
    let mut versions = Vec::new();
    for i in 0..5 {
        versions.push(put_version(&c.http, &leader_url, &format!("cli/{i}"), i).await);
    }
    let first = next_lines(5, 20);
    assert_eq!(first.len(), 5, "{first:?}");
    c.kill(followers[0]);
    for i in 5..10 {
        versions.push(put_version(&c.http, &leader_url, &format!("cli/{i}"), i).await);
    }
    let rest = next_lines(5, 30);
    let _ = cli.kill();
    let _ = cli.wait();
    let lines: Vec<_> = first.into_iter().chain(rest).collect();
    let got: Vec<(u64, String, serde_json::Value)> = lines
        .iter()
        .map(|l| {
            let ch = &l["changes"][0];
            (
                l["index"].as_str().unwrap().parse().unwrap(),
                ch["key"].as_str().unwrap().to_string(),
                ch["value"].clone(),
            )
        })
        .collect();
    let want: Vec<(u64, String, serde_json::Value)> =
        versions.iter().enumerate().map(|(i, v)| (*v, format!("cli/{i}"), json!(i))).collect();
    assert_eq!(got, want, "every change once, in order, across the kill");
}

/// SIGTERM ends open watch streams, so the node exits as soon as its other requests drain
/// rather than after `--drain-timeout-ms`; the client sees its stream end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_watch_streams_instead_of_waiting_out_the_drain_timeout() {
    let mut c = Cluster::single_with(&["--drain-timeout-ms", "60000"]);
    c.wait_for_leader(deadline_in(20)).await;
    let mut stream = sse::open(&format!("{}/kv/watch", c.url(1)), &[]).await.expect("stream");
    let first = stream.next(std::time::Instant::now() + Duration::from_secs(10)).await;
    assert_eq!(first.map(|e| e.event), Some("progress".to_string()));
    // Well under the 60 s drain timeout: the stream must not hold the drain.
    let status = c.terminate(1, deadline_in(20)).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(stream.next(std::time::Instant::now() + Duration::from_secs(5)).await, None, "the stream ended");
}

/// A client that stops reading holds its stream back: the node's buffers fill, the watch falls
/// behind the live feed (about a thousand apply runs), and it catches up from the history once
/// the client reads again, with every event exactly once and in order. (The send timeout is
/// raised: by default a client that reads nothing for 30 s is cut off, and would resume.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_catches_up_from_the_history_without_a_gap() {
    let mut c = Cluster::single_with(&["--send-timeout-ms", "600000"]);
    c.wait_for_leader(deadline_in(20)).await;
    let url = c.url(1);
    let mut stream = sse::open(&format!("{url}/kv/watch?prefix=slow/"), &[]).await.expect("opens");
    // One writer, so every put is its own apply run. The socket and stream buffers take the
    // first few hundred 32 KiB events; the 2,000 runs leave well over the feed's 1,024 after.
    let big = "x".repeat(32 * 1024);
    let mut versions = Vec::new();
    for i in 0..2_000 {
        let r = c.http.put(&url, &format!("slow/{i:04}"), &json!({"value": big})).await;
        versions.push(r.version());
    }
    let got = stream.changes(versions.len(), deadline_in(120)).await;
    let ids: Vec<u64> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids.len(), versions.len(), "every write once");
    assert_eq!(ids, versions, "in index order, none missing or repeated");
    let m = c.http.must(Method::GET, &format!("{url}/metrics"), None, &[]).await;
    let catchups: u64 = m
        .text
        .lines()
        .find_map(|l| l.strip_prefix("cairn_watch_catchups_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("cairn_watch_catchups_total");
    assert!(catchups > 0, "the watch never fell behind the feed, so this test showed nothing");
}

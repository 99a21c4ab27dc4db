//! `cairn lease`, `cairn lock NAME -- CMD` and `cairn elect`, run as the binary against a real
//! node: a command runs under the lock with its token and the lock is released after; a lock
//! held by another ends the wait with exit 1; a lost lease stops the command and exits 4; an
//! elected candidate shows in `--observe` and resigns on SIGINT.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{cairn_command, deadline_in, run_cairn_once, until, Cluster};

async fn cairn(args: &[&str], endpoint: &str) -> (i32, String, String) {
    // Right after the subcommand: after `--` it would be the locked command's.
    let mut argv: Vec<String> = vec![args[0].to_string(), "--endpoints".to_string(), endpoint.to_string()];
    argv.extend(args[1..].iter().map(|a| a.to_string()));
    let out = run_cairn_once(&argv, deadline_in(60)).await;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn spawn(args: &[&str], endpoint: &str) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::from(cairn_command());
    cmd.arg(args[0]).args(["--endpoints", endpoint]).args(&args[1..]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.spawn().expect("spawn cairn")
}

async fn node() -> (Cluster, String) {
    let mut c = Cluster::single_with(&[]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    (c, url)
}

async fn lock_state(c: &Cluster, url: &str, name: &str) -> Value {
    c.http.must(Method::GET, &format!("{url}/locks/{name}"), None, &[]).await.data().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_commands_grant_keep_alive_and_revoke() {
    let (_c, url) = node().await;
    let (code, out, err) = cairn(&["lease", "grant", "30"], &url).await;
    assert_eq!(code, 0, "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"].as_str().unwrap().to_string();
    let (code, out, err) = cairn(&["lease", "keepalive", &id], &url).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    let (code, _, err) = cairn(&["lease", "revoke", &id], &url).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cairn(&["lease", "revoke", &id], &url).await;
    assert_eq!(code, 1, "a lease that is gone: {err}");
    assert!(err.contains("lease_not_found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_the_command_with_its_token_and_waits_out_another_holder() {
    let (c, url) = node().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let script = format!("echo \"$CAIRN_LOCK_NAME $CAIRN_LOCK_TOKEN\" > {}; exit 7", file.display());
    let (code, _, err) = cairn(&["lock", "job", "--", "sh", "-c", &script], &url).await;
    assert_eq!(code, 7, "the command's own exit status: {err}");
    let written = std::fs::read_to_string(&file).unwrap();
    let (name, token) = written.trim().split_once(' ').unwrap();
    assert_eq!(name, "job");
    assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()), "{written}");
    assert_eq!(lock_state(&c, &url, "job").await["holder"], Value::Null, "released after the command");

    // Another holder keeps it: a bounded wait ends with exit 1 and the command never runs.
    let lease = c.http.must(Method::POST, &format!("{url}/leases"), Some(br#"{"ttlSeconds": 60}"#.to_vec()), &[]).await;
    let lease = lease.data()["id"].as_str().unwrap().to_string();
    let body = serde_json::to_vec(&json!({"lease": lease})).unwrap();
    let held = c.http.must(Method::POST, &format!("{url}/locks/job"), Some(body), &[]).await;
    assert_eq!(held.status, 200, "{held:?}");
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let (code, _, err) = cairn(&["lock", "job", "--wait", "1", "--", "sh", "-c", &touch], &url).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("lock_held"), "{err}");
    assert!(!marker.exists(), "the command must not run without the lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_the_command_and_says_so() {
    let (c, url) = node().await;
    let mut child = spawn(&["lock", "job", "--ttl", "3", "--", "sleep", "120"], &url);
    let (http, u) = (&c.http, &url);
    let lease = until(deadline_in(15), "the CLI to hold the lock", async || {
        let r = http.send(Method::GET, &format!("{u}/locks/job"), None, &[]).await?;
        r.data()["holder"]["lease"].as_str().map(str::to_string).ok_or(format!("{r:?}"))
    })
    .await;
    let revoked = c.http.must(Method::DELETE, &format!("{url}/leases/{lease}"), None, &[]).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let status = wait_until_exit_async(&mut child, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(4), "exit 4 says the lock was lost");
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut err).await.unwrap();
    assert!(err.contains("lost"), "{err}");
}

async fn wait_until_exit_async(child: &mut tokio::process::Child, within: Duration) -> std::process::ExitStatus {
    tokio::time::timeout(within, child.wait()).await.expect("the CLI exits in time").expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_leads_until_interrupted_and_observe_follows_it() {
    let (_c, url) = node().await;
    let mut observer = spawn(&["elect", "main", "--observe"], &url);
    let mut lines = BufReader::new(observer.stdout.take().unwrap()).lines();
    assert_eq!(next_of(&mut lines).await, "null", "nobody leads yet");

    let mut candidate = spawn(&["elect", "main", "web-1"], &url);
    let led: Value = serde_json::from_str(&next_of(&mut lines).await).unwrap();
    assert_eq!(led["value"], "web-1", "{led}");
    let mut out = BufReader::new(candidate.stdout.take().unwrap()).lines();
    let printed: Value = serde_json::from_str(&next_of(&mut out).await).unwrap();
    assert_eq!(printed["token"], led["token"], "the candidate prints its leadership: {printed}");

    let pid = candidate.id().expect("running") as libc::pid_t;
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = wait_until_exit_async(&mut candidate, Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(next_of(&mut lines).await, "null", "resigned on SIGINT");
    observer.kill().await.ok();
}

async fn next_of(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("a line")
}

//! `cairn lease`, `cairn lock NAME -- CMD` and `cairn elect`: the coordination commands.
//!
//! A lock or a leadership is only as good as its lease, so both keep theirs alive in the
//! background (every third of its TTL) and treat it as lost when the server says it is gone, or
//! when no keepalive has succeeded for a whole TTL (the server may have ended it meanwhile:
//! assuming otherwise is how two holders happen). `cairn lock` then stops its command with
//! SIGTERM and exits with [`exit::LOST`].

use std::process::ExitStatus;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Url;
use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use super::cli::{error_line, finish, parse_json, pretty, ClientOpts};
use super::error::{exit, ClientError};
use super::transport::Client;

#[derive(Debug, Clone, Subcommand)]
pub enum LeaseCmd {
    /// Grant a lease that lives TTL seconds without a keepalive; prints its id
    Grant { ttl: u64 },
    /// Restart the lease's TTL once
    Keepalive { id: String },
    /// Revoke the lease; every key attached to it is deleted
    Revoke { id: String },
}

#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// The lock's name
    pub name: String,
    /// TTL of the lease that holds the lock, in seconds: how long a crashed holder keeps it
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ttl: u64,
    /// Give up when the lock is not held within this many seconds (default: wait for it)
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
    /// The command to run while holding the lock, after `--`
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ElectArgs {
    /// The election's name
    pub name: String,
    /// The value to announce once leading (JSON; a bare word is taken as a string)
    #[arg(required_unless_present = "observe")]
    pub value: Option<String>,
    /// Print the leader and every change of it instead of campaigning (JSON lines)
    #[arg(long, conflicts_with = "value")]
    pub observe: bool,
    /// TTL of the candidate's lease, in seconds
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ttl: u64,
}

/// The server holds one lock or campaign request at most this long (docs/api.md, Locks).
const SERVER_MAX_WAIT: Duration = Duration::from_secs(60);

/// Runs a `lease` subcommand; returns the exit code.
pub async fn run_lease(opts: &ClientOpts, cmd: LeaseCmd) -> i32 {
    let outcome = match opts.client() {
        Ok(client) => match cmd {
            LeaseCmd::Grant { ttl } => client.lease_grant(ttl).await,
            LeaseCmd::Keepalive { id } => client.lease_keepalive(&id).await,
            LeaseCmd::Revoke { id } => client.lease_revoke(&id).await,
        }
        .and_then(pretty),
        Err(e) => Err(e),
    };
    finish(outcome)
}

fn fail(e: &ClientError) -> i32 {
    eprintln!("{}", error_line(e));
    e.exit_code()
}

/// A granted lease kept alive in the background until it is revoked or lost.
struct Held {
    client: Client,
    lease: String,
    keeper: tokio::task::JoinHandle<String>,
}

impl Held {
    async fn grant(client: &Client, ttl: u64) -> Result<Held, ClientError> {
        let reply = client.lease_grant(ttl).await?;
        let lease = reply.data["id"].as_str().unwrap_or_default().to_string();
        let keeper = tokio::spawn(keep_alive(client.clone(), lease.clone(), Duration::from_secs(ttl)));
        Ok(Held { client: client.clone(), lease, keeper })
    }

    /// Resolves with why the lease is lost.
    async fn lost(&mut self) -> String {
        (&mut self.keeper).await.unwrap_or_else(|e| format!("the keepalive task failed: {e}"))
    }

    /// Stops the keepalives and revokes the lease (which also leaves every queue it is in).
    async fn revoke(self) {
        self.keeper.abort();
        if let Err(e) = self.client.lease_revoke(&self.lease).await {
            eprintln!("warning: revoking lease {}: {} (it expires by itself)", self.lease, error_line(&e));
        }
    }
}

/// Keeps `lease` alive every third of its TTL; returns why it is lost: the server no longer
/// has it, or no keepalive succeeded for a whole TTL.
async fn keep_alive(client: Client, lease: String, ttl: Duration) -> String {
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(ttl / 3).await;
        match client.lease_keepalive(&lease).await {
            Ok(_) => last_ok = Instant::now(),
            Err(ClientError::Api { status: 404, .. }) => return format!("lease {lease} is gone"),
            Err(e) if last_ok.elapsed() >= ttl => {
                return format!("no keepalive of lease {lease} succeeded for {} s: {}", ttl.as_secs(), error_line(&e));
            }
            Err(e) => eprintln!("warning: keepalive of lease {lease}: {}; retrying", error_line(&e)),
        }
    }
}

/// Takes `queue`'s turn in rounds of at most the server's wait, until `deadline` (none: for
/// ever). The same lease keeps its place across a failed round (the server makes a retry with it
/// idempotent) but not across a round whose wait ran out, which gives the place back.
async fn turn<F, Fut>(deadline: Option<Instant>, mut attempt: F) -> Result<Value, ClientError>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<Value, ClientError>>,
{
    loop {
        let wait =
            deadline.map_or(SERVER_MAX_WAIT, |d| d.saturating_duration_since(Instant::now()).min(SERVER_MAX_WAIT));
        match attempt(wait).await {
            Ok(data) => return Ok(data),
            Err(ClientError::Api { status: 409, ref code, .. })
                if (code == "lock_held" || code == "not_elected") && deadline.is_none_or(|d| Instant::now() < d) => {}
            Err(e @ (ClientError::Unavailable { .. } | ClientError::UnknownOutcome { .. }))
                if deadline.is_none_or(|d| Instant::now() < d) =>
            {
                eprintln!("warning: {}; trying again", error_line(&e));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `cairn lock NAME -- CMD ARGS`.
pub async fn run_lock(opts: &ClientOpts, args: LockArgs) -> i32 {
    let client = match opts.client() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let mut held = match Held::grant(&client, args.ttl).await {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let deadline = args.wait.map(|s| Instant::now() + Duration::from_secs(s));
    let lease = held.lease.clone();
    let taken = turn(deadline, |wait| {
        let (client, name, lease) = (client.clone(), args.name.clone(), lease.clone());
        async move { client.lock(&name, &lease, wait).await.map(|r| r.data) }
    })
    .await;
    let token = match taken {
        Ok(data) => data["token"].as_str().unwrap_or_default().to_string(),
        Err(e) => {
            let code = fail(&e);
            held.revoke().await;
            return code;
        }
    };
    eprintln!("lock {}: held with token {token}", args.name);
    let child = tokio::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .env("CAIRN_LOCK_NAME", &args.name)
        .env("CAIRN_LOCK_TOKEN", &token)
        .env("CAIRN_LEASE_ID", &held.lease)
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot run {:?}: {e}", args.command[0]);
            release(&client, &args.name, &token).await;
            held.revoke().await;
            return 127;
        }
    };
    let code = tokio::select! {
        status = child.wait() => exit_status(status),
        why = held.lost() => {
            eprintln!("error: lock {} lost ({why}); stopping the command", args.name);
            stop(&mut child).await;
            exit::LOST
        }
        _ = terminated() => {
            stop(&mut child).await;
            130
        }
    };
    release(&client, &args.name, &token).await;
    held.revoke().await;
    code
}

async fn release(client: &Client, name: &str, token: &str) {
    if let Err(e) = client.unlock(name, token).await {
        eprintln!("warning: releasing lock {name}: {} (revoking the lease releases it too)", error_line(&e));
    }
}

fn exit_status(status: std::io::Result<ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            eprintln!("error: waiting for the command: {e}");
            exit::UNAVAILABLE
        }
    }
}

/// SIGTERM to the child, then SIGKILL if it has not exited 10 s later.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// SIGINT or SIGTERM to this process.
async fn terminated() {
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// `cairn elect NAME VALUE` and `cairn elect NAME --observe`.
pub async fn run_elect(opts: &ClientOpts, args: ElectArgs) -> i32 {
    let client = match opts.client() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if args.observe {
        return observe(&client, &args.name).await;
    }
    let raw = args.value.unwrap_or_default();
    let value = parse_json(&raw).unwrap_or(Value::String(raw));
    let mut held = match Held::grant(&client, args.ttl).await {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let lease = held.lease.clone();
    let won = tokio::select! {
        won = turn(None, |wait| {
            let (client, name, lease, value) = (client.clone(), args.name.clone(), lease.clone(), value.clone());
            async move { client.campaign(&name, &lease, &value, wait).await.map(|r| r.data) }
        }) => won,
        _ = terminated() => {
            held.revoke().await;
            return 130;
        }
        why = held.lost() => {
            eprintln!("error: lost the lease while campaigning: {why}");
            return exit::LOST;
        }
    };
    let data = match won {
        Ok(d) => d,
        Err(e) => {
            let code = fail(&e);
            held.revoke().await;
            return code;
        }
    };
    println!("{data}");
    let token = data["token"].as_str().unwrap_or_default().to_string();
    tokio::select! {
        _ = terminated() => {
            if let Err(e) = client.resign(&args.name, &token).await {
                eprintln!("warning: resigning: {} (revoking the lease ends the leadership too)", error_line(&e));
            }
            held.revoke().await;
            exit::OK
        }
        why = held.lost() => {
            eprintln!("error: leadership of {} lost ({why})", args.name);
            exit::LOST
        }
    }
}

/// Prints the leader at once and at every change, one JSON line each (`null` while none
/// leads), following `GET /elections/{name}/observe` across endpoints.
async fn observe(client: &Client, name: &str) -> i32 {
    let mut last: Option<String> = None;
    for endpoint in client.endpoints().iter().cycle() {
        match observe_one(client, endpoint, name, &mut last).await {
            Ok(code) => return code,
            Err(why) => eprintln!("observe: {endpoint}: {why}; going on at the next endpoint"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    exit::UNAVAILABLE
}

/// One stream. `Ok` ends the command with that code; `Err` moves to the next endpoint. `last`
/// is the last line printed, so a new stream's first event is not printed twice.
async fn observe_one(client: &Client, endpoint: &Url, name: &str, last: &mut Option<String>) -> Result<i32, String> {
    let mut url = endpoint.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(["elections", name, "observe"]);
    }
    let resp = client
        .http()
        .get(url)
        .timeout(Duration::from_secs(365 * 24 * 3600))
        .header("accept", "text/event-stream")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body: Value = resp.json().await.unwrap_or_default();
        let e = ClientError::Api {
            status,
            code: body["error"]["code"].as_str().unwrap_or("unexpected_status").to_string(),
            message: body["error"]["message"].as_str().unwrap_or("").to_string(),
            endpoint: endpoint.to_string(),
        };
        if status >= 500 {
            return Err(error_line(&e));
        }
        return Ok(fail(&e));
    }
    let mut resp = resp;
    let mut buf = String::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let event = block.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim).unwrap_or("");
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
            let line = match event {
                "leader" => data,
                "none" => "null".to_string(),
                _ => continue,
            };
            if last.as_deref() != Some(line.as_str()) {
                println!("{line}");
                *last = Some(line);
            }
        }
        match resp.chunk().await {
            Ok(Some(bytes)) => buf.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => return Err("the stream ended".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

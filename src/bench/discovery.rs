//! Where a run sends its requests: finding the leader and a follower of a Cairn or etcd
//! cluster, and making sure a follower has caught up with the preload before stale reads.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use super::target::{base64, join, send, Target};
use super::workload::Workload;
use crate::client::{ClusterStatus, Role};

/// The endpoints a run uses.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where preload and sync writes go.
    pub write: Url,
    /// The measured requests; client `i` uses `targets[i % len]`.
    pub targets: Vec<Url>,
    /// `leader`, `follower` or `round-robin`, for the report.
    pub routing: String,
}

/// One endpoint's view of the cluster.
#[derive(Debug, Clone)]
struct EndpointView {
    url: Url,
    is_leader: bool,
    /// Cairn only: the leader's advertised address when this node is not it.
    leader_addr: Option<String>,
}

/// Chooses the endpoints. With discovery, linearizable work goes to the leader (so no proxy hop
/// is measured) and get-stale to one follower; without it, clients spread over `endpoints`.
pub async fn plan(
    http: &reqwest::Client,
    target: Target,
    endpoints: &[Url],
    workload: Workload,
    discover: bool,
    etcd_prefix: &str,
) -> Result<Plan, String> {
    if !discover {
        return Ok(Plan { write: endpoints[0].clone(), targets: endpoints.to_vec(), routing: "round-robin".into() });
    }
    let mut roles = Vec::new();
    for url in endpoints {
        let role = match target {
            Target::Cairn => cairn_role(http, url).await,
            Target::Etcd => etcd_role(http, url, etcd_prefix).await,
        };
        match role {
            Ok(r) => roles.push(r),
            Err(e) => eprintln!("bench: {url}: {e}; skipping this endpoint"),
        }
    }
    let leader = match roles.iter().find(|r| r.is_leader) {
        Some(r) => r.url.clone(),
        None => match roles.iter().find_map(|r| r.leader_addr.clone()) {
            Some(addr) => crate::client::parse_endpoint(&addr).map_err(|e| e.to_string())?,
            None => return Err("no endpoint is or knows the leader".into()),
        },
    };
    if workload != Workload::GetStale {
        return Ok(Plan { write: leader.clone(), targets: vec![leader], routing: "leader".into() });
    }
    match roles.iter().find(|r| !r.is_leader) {
        Some(f) => Ok(Plan { write: leader, targets: vec![f.url.clone()], routing: "follower".into() }),
        None => {
            eprintln!("bench: no follower among the endpoints; stale reads go to the leader");
            Ok(Plan { write: leader.clone(), targets: vec![leader], routing: "leader".into() })
        }
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

async fn cairn_role(http: &reqwest::Client, url: &Url) -> Result<EndpointView, String> {
    let (status, body) = send(http, Method::GET, &join(url, &["cluster", "status"]), None).await?;
    if !status.is_success() {
        return Err(format!("cluster/status answered {status}"));
    }
    let s: Envelope<ClusterStatus> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let s = s.data;
    let leader_addr =
        s.leader.filter(|&l| l != s.id).and_then(|l| s.members.iter().find(|m| m.id == l).map(|m| m.addr.clone()));
    Ok(EndpointView { url: url.clone(), is_leader: s.role == Role::Leader, leader_addr })
}

/// etcd's gateway renders uint64 fields as JSON strings; a member is the leader when its own id
/// (`header.member_id`) equals the `leader` it reports.
async fn etcd_role(http: &reqwest::Client, url: &Url, prefix: &str) -> Result<EndpointView, String> {
    let status_url = etcd_url(url, prefix, &["maintenance", "status"]);
    let (status, body) = send(http, Method::POST, &status_url, Some(Bytes::from_static(b"{}"))).await?;
    if !status.is_success() {
        return Err(format!("maintenance/status answered {status}"));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let member = v.pointer("/header/member_id").cloned().unwrap_or(Value::Null);
    let leader = v.get("leader").cloned().unwrap_or(Value::Null);
    Ok(EndpointView { url: url.clone(), is_leader: !member.is_null() && member == leader, leader_addr: None })
}

fn etcd_url(base: &Url, prefix: &str, tail: &[&str]) -> Url {
    let mut segs: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    segs.extend_from_slice(tail);
    join(base, &segs)
}

/// The key used to check that a follower has applied everything written before it.
const SYNC_KEY: &str = "bench-sync";

/// Writes a fresh marker through `plan.write` and waits until every target serves it from its
/// local state. Raft applies in log order, so seeing the marker means the whole preload is
/// there too, and the stale reads that follow will not miss.
pub async fn wait_for_followers(
    http: &reqwest::Client,
    target: Target,
    plan: &Plan,
    etcd_prefix: &str,
    deadline: Duration,
) -> Result<(), String> {
    let nonce = format!(
        "sync-{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    );
    let (url, body) = match target {
        Target::Cairn => (join(&plan.write, &["kv", "items", SYNC_KEY]), json!({ "value": nonce })),
        Target::Etcd => (
            etcd_url(&plan.write, etcd_prefix, &["kv", "put"]),
            json!({ "key": base64(SYNC_KEY.as_bytes()), "value": base64(nonce.as_bytes()) }),
        ),
    };
    let method = if target == Target::Cairn { Method::PUT } else { Method::POST };
    let (status, _) = send(http, method, &url, Some(Bytes::from(body.to_string()))).await?;
    if !status.is_success() {
        return Err(format!("sync write answered {status}"));
    }
    let until = Instant::now() + deadline;
    for t in &plan.targets {
        loop {
            if sees_marker(http, target, t, etcd_prefix, &nonce).await {
                break;
            }
            if Instant::now() >= until {
                return Err(format!("{t} did not apply the preload within {}", humantime::format_duration(deadline)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn sees_marker(http: &reqwest::Client, target: Target, url: &Url, prefix: &str, nonce: &str) -> bool {
    let got = match target {
        Target::Cairn => {
            let mut u = join(url, &["kv", "items", SYNC_KEY]);
            u.set_query(Some("consistency=stale"));
            send(http, Method::GET, &u, None).await
        }
        Target::Etcd => {
            let body = json!({ "key": base64(SYNC_KEY.as_bytes()), "serializable": true }).to_string();
            send(http, Method::POST, &etcd_url(url, prefix, &["kv", "range"]), Some(Bytes::from(body))).await
        }
    };
    let Ok((status, body)) = got else { return false };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return false };
    status.is_success()
        && match target {
            Target::Cairn => v.pointer("/data/value").and_then(Value::as_str) == Some(nonce),
            Target::Etcd => {
                v.pointer("/kvs/0/value").and_then(Value::as_str) == Some(base64(nonce.as_bytes()).as_str())
            }
        }
}

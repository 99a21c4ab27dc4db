//! The `cairn serve` processes of one run: spawned from this process (so inside its network
//! namespace when it runs in one), killed with SIGKILL, paused with SIGSTOP/SIGCONT and
//! restarted on the same data dir. Only the PIDs of these children are ever signalled.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::proc::signal;

struct Node {
    id: u64,
    ip: String,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
}

pub struct Cluster {
    nodes: Vec<Node>,
    peers: String,
    bin: PathBuf,
    snapshot_logs: u64,
    /// Nodes that exited without being killed by the nemesis: a crash is a finding.
    pub unexpected_exits: Vec<String>,
}

/// What one node said about the cluster.
#[derive(Debug, Clone)]
pub struct StatusView {
    pub id: u64,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub applied: u64,
}

impl Cluster {
    /// Lays out nodes 1..=n at `addrs` (`(ip, port)`), with data dirs and logs under `dir`.
    pub fn new(dir: &Path, addrs: &[(String, u16)], bin: PathBuf, snapshot_logs: u64) -> Cluster {
        let nodes: Vec<Node> = addrs
            .iter()
            .enumerate()
            .map(|(i, (ip, port))| {
                let id = i as u64 + 1;
                Node {
                    id,
                    ip: ip.clone(),
                    port: *port,
                    data_dir: dir.join(format!("node{id}")),
                    log_path: dir.join(format!("node{id}.log")),
                    child: None,
                    paused: false,
                }
            })
            .collect();
        let peers = nodes.iter().map(|n| format!("{}={}:{}", n.id, n.ip, n.port)).collect::<Vec<_>>().join(",");
        Cluster { nodes, peers, bin, snapshot_logs, unexpected_exits: Vec::new() }
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn url(&self, id: u64) -> String {
        let n = self.node(id);
        format!("http://{}:{}", n.ip, n.port)
    }

    pub fn urls(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.url(id)).collect()
    }

    pub fn ip(&self, id: u64) -> String {
        self.node(id).ip.clone()
    }

    pub fn is_up(&self, id: u64) -> bool {
        let n = self.node(id);
        n.child.is_some() && !n.paused
    }

    /// Spawns node `id` on its data dir, appending its output to its log.
    pub fn start(&mut self, id: u64) -> Result<(), String> {
        let (bin, peers, snapshot_logs) = (self.bin.clone(), self.peers.clone(), self.snapshot_logs);
        let node = self.node_mut(id);
        if node.child.is_some() {
            return Err(format!("node {id} is already running"));
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| format!("open {}: {e}", node.log_path.display()))?;
        let out = log.try_clone().map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .args(["--id", &id.to_string()])
            .args(["--listen", &format!("{}:{}", node.ip, node.port)])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--peers", &peers])
            .args(["--snapshot-logs", &snapshot_logs.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // The node must see only the flags above, not the developer's environment.
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("CAIRN_") {
                cmd.env_remove(var);
            }
        }
        let child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let _ = writeln!(log, "=== chaos: started node {id} pid {}", child.id());
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// SIGKILL (this child's PID only) and reap.
    pub fn kill(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let pid = child.id();
            if let Ok(mut log) = OpenOptions::new().append(true).open(&node.log_path) {
                let _ = writeln!(log, "=== chaos: SIGKILLed node {id} pid {pid}");
            }
        }
        node.paused = false;
    }

    pub fn pause(&mut self, id: u64) -> Result<(), String> {
        let node = self.node_mut(id);
        let child = node.child.as_ref().ok_or(format!("node {id} is not running"))?;
        signal(child, "STOP")?;
        node.paused = true;
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> Result<(), String> {
        let node = self.node_mut(id);
        if let Some(child) = node.child.as_ref() {
            signal(child, "CONT")?;
        }
        node.paused = false;
        Ok(())
    }

    /// Brings every node back: resumes paused ones and starts stopped ones.
    pub fn heal_processes(&mut self) -> Result<(), String> {
        for id in self.ids() {
            if self.node(id).paused {
                self.resume(id)?;
            }
            if self.node(id).child.is_none() {
                self.start(id)?;
            }
        }
        Ok(())
    }

    /// Records (and forgets) nodes that exited on their own since the last call.
    pub fn reap(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.unexpected_exits.push(format!(
                        "node {} (pid {}) exited on its own with {status}; see {}",
                        node.id,
                        child.id(),
                        node.log_path.display()
                    ));
                    node.child = None;
                    node.paused = false;
                }
            }
        }
    }

    /// `GET /cluster/status` of every running, unpaused node, within `deadline`.
    pub async fn statuses(&self, http: &reqwest::Client, deadline: Instant) -> Vec<Result<StatusView, String>> {
        let mut out = Vec::new();
        for id in self.ids().into_iter().filter(|id| self.is_up(*id)) {
            let url = format!("{}/cluster/status", self.url(id));
            let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            let got = tokio::time::timeout(remaining, async {
                let resp = http.get(&url).send().await.map_err(|e| e.to_string())?;
                let body: Value = resp.json().await.map_err(|e| e.to_string())?;
                let d = &body["data"];
                Ok(StatusView {
                    id,
                    role: d["role"].as_str().unwrap_or("?").to_string(),
                    term: d["term"].as_u64().unwrap_or(0),
                    leader: d["leader"].as_u64(),
                    applied: d["appliedIndex"].as_u64().unwrap_or(0),
                })
            })
            .await
            .unwrap_or_else(|_| Err(format!("node {id}: status timed out")));
            out.push(got);
        }
        out
    }

    /// The node that calls itself leader with the highest term, if any answers in time.
    pub async fn current_leader(&self, http: &reqwest::Client, deadline: Instant) -> Option<u64> {
        self.statuses(http, deadline)
            .await
            .into_iter()
            .flatten()
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    /// Waits until every running node names the same leader and that node says it leads.
    pub async fn wait_stable_leader(&self, http: &reqwest::Client, deadline: Instant) -> Result<u64, String> {
        loop {
            let views = self.statuses(http, Instant::now() + Duration::from_secs(2)).await;
            let ok: Vec<&StatusView> = views.iter().flatten().collect();
            if ok.len() == views.len() && !ok.is_empty() {
                let leader = ok[0].leader;
                let agree = ok.iter().all(|s| s.leader == leader);
                let leads = ok.iter().filter(|s| s.role == "leader").map(|s| s.id).collect::<Vec<_>>();
                if let (true, Some(l)) = (agree, leader) {
                    if leads == [l] {
                        return Ok(l);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no agreed leader by the deadline; last statuses: {views:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills every node (end of run).
    pub fn stop_all(&mut self) {
        for id in self.ids() {
            if self.node(id).paused {
                let _ = self.resume(id);
            }
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

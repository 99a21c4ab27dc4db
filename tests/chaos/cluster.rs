//! The `cairn serve` processes of one run, on the shared harness (`support::Cluster`, the one
//! the integration tests use): spawned from this process (so inside its network namespace when
//! it runs in one), killed with SIGKILL, paused with SIGSTOP/SIGCONT and restarted on the same
//! data dir. Only the PIDs of these children are ever signalled. What is chaos-specific lives
//! here: exits collected as findings, and the status views the nemesis and checks read.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;

pub struct Cluster {
    inner: support::Cluster,
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
        let extra = vec!["--snapshot-logs".to_string(), snapshot_logs.to_string()];
        Cluster { inner: support::Cluster::at(dir, addrs, bin, extra), unexpected_exits: Vec::new() }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.inner.ids()
    }

    pub fn len(&self) -> usize {
        self.inner.ids().len()
    }

    pub fn url(&self, id: u64) -> String {
        self.inner.url(id)
    }

    pub fn urls(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.url(id)).collect()
    }

    pub fn ip(&self, id: u64) -> String {
        let addr = self.inner.addr(id);
        addr.rsplit_once(':').map(|(ip, _)| ip.to_string()).unwrap_or(addr)
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.inner.is_up(id)
    }

    /// Spawns node `id` on its data dir, appending its output to its log.
    pub fn start(&mut self, id: u64) -> Result<(), String> {
        self.inner.try_start_node(id)
    }

    /// SIGKILL (this child's PID only) and reap; a node that is not running is left alone.
    pub fn kill(&mut self, id: u64) {
        if self.inner.is_running(id) {
            self.inner.kill(id);
        }
    }

    pub fn pause(&mut self, id: u64) -> Result<(), String> {
        self.inner.pause(id)
    }

    pub fn resume(&mut self, id: u64) -> Result<(), String> {
        self.inner.resume(id)
    }

    /// Brings every node back: resumes paused ones and starts stopped ones.
    pub fn heal_processes(&mut self) -> Result<(), String> {
        for id in self.ids() {
            if self.inner.is_paused(id) {
                self.resume(id)?;
            }
            if !self.inner.is_running(id) {
                self.start(id)?;
            }
        }
        Ok(())
    }

    /// Records (and forgets) nodes that exited on their own since the last call.
    pub fn reap(&mut self) {
        let exits = self.inner.reap();
        self.unexpected_exits.extend(exits);
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
            if self.inner.is_paused(id) {
                let _ = self.resume(id);
            }
            self.kill(id);
        }
    }
}

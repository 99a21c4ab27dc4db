//! The `cairn serve` processes of one run, on the shared harness (`support::Cluster`, the one
//! the integration tests use): spawned from this process (so inside its network namespace when
//! it runs in one), killed with SIGKILL, paused with SIGSTOP/SIGCONT and restarted on the same
//! data dir. Only the PIDs of these children are ever signalled. What is chaos-specific lives
//! here: exits collected as findings, the status views the nemesis and checks read, spare
//! nodes that membership steps add and the members they remove, and each node's test clock
//! file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;

/// The variable that arms a node's test clock (`src/test_clock.rs`).
const CLOCK_ENV: &str = "CAIRN_TEST_CLOCK_FILE";

/// Replaces an offset file in one rename.
fn write_offset(path: &Path, offset_ms: i64) -> Result<(), String> {
    let tmp = path.with_extension("clock-new");
    std::fs::write(&tmp, format!("{offset_ms}\n")).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename {} to {}: {e}", tmp.display(), path.display()))
}

pub struct Cluster {
    inner: support::Cluster,
    /// The current members, in the order they joined: the initial nodes, then spares added by
    /// membership steps, less the removed ones. Faults, healing and the final checks see only
    /// these.
    members: Vec<u64>,
    /// Prepared nodes not started yet (ids above the initial ones, used in order).
    spares: Vec<u64>,
    /// Nodes removed from the cluster (and stopped): never restarted.
    pub removed: Vec<u64>,
    /// Per node, the test clock's offset file, when the plan has clock steps.
    clock_files: Option<PathBuf>,
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
    /// The members this node knows: voters and learners.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

impl Cluster {
    /// Lays out nodes 1..=addrs.len() at `addrs` (`(ip, port)`), with data dirs and logs under
    /// `dir`: the first `initial` form the cluster, the rest are spares. With `test_clock`,
    /// every node starts with `CAIRN_TEST_CLOCK_FILE` pointing at its own offset file
    /// (`dir/nodeN.clock`, holding 0 until a clock step writes it).
    pub fn new(
        dir: &Path,
        addrs: &[(String, u16)],
        initial: usize,
        bin: PathBuf,
        snapshot_logs: u64,
        test_clock: bool,
    ) -> Result<Cluster, String> {
        let extra = vec!["--snapshot-logs".to_string(), snapshot_logs.to_string()];
        let mut inner = support::Cluster::at(dir, addrs, initial, bin, extra);
        let ids = inner.ids();
        if test_clock {
            for &id in &ids {
                let file = dir.join(format!("node{id}.clock"));
                write_offset(&file, 0)?;
                inner.set_node_env(id, &[(CLOCK_ENV, &file.display().to_string())]);
            }
        }
        Ok(Cluster {
            inner,
            members: ids[..initial].to_vec(),
            spares: ids[initial..].to_vec(),
            removed: Vec::new(),
            clock_files: test_clock.then(|| dir.to_path_buf()),
            unexpected_exits: Vec::new(),
        })
    }

    /// The current members.
    pub fn ids(&self) -> Vec<u64> {
        self.members.clone()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn url(&self, id: u64) -> String {
        self.inner.url(id)
    }

    /// The current members' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.url(id)).collect()
    }

    /// Every prepared node's URL, in id order (index + 1 is the id), members or not: what a
    /// history's `node` field can name.
    pub fn all_urls(&self) -> Vec<String> {
        self.inner.ids().into_iter().map(|id| self.url(id)).collect()
    }

    /// Starts the next spare with `--join` through member `via`; it counts as a member from
    /// now on (healing restarts it, the final checks include it). `Err` when none is left.
    pub fn start_spare(&mut self, via: u64) -> Result<u64, String> {
        if self.spares.is_empty() {
            return Err("no spare node left for a membership step".into());
        }
        let id = self.spares.remove(0);
        self.inner.try_start_joining(id, via)?;
        self.members.push(id);
        Ok(id)
    }

    /// Forgets `id` as a member and SIGKILLs it (its own PID): a node removed from the cluster
    /// is stopped, as the runbook says, and never restarted. Its data dir and log stay.
    pub fn retire(&mut self, id: u64) {
        if self.inner.is_paused(id) {
            let _ = self.resume(id);
        }
        self.kill(id);
        self.members.retain(|m| *m != id);
        self.removed.push(id);
    }

    /// Sets node `id`'s test clock offset; the node reads it within 50 ms. The file is
    /// replaced in one rename, so the node never reads half of it.
    pub fn set_clock_offset(&self, id: u64, offset_ms: i64) -> Result<(), String> {
        let dir = self.clock_files.as_ref().ok_or("the nodes run without a test clock")?;
        write_offset(&dir.join(format!("node{id}.clock")), offset_ms)
    }

    /// Sets every node's test clock back to the true time (a no-op without test clocks).
    pub fn reset_clocks(&self) -> Result<(), String> {
        if self.clock_files.is_none() {
            return Ok(());
        }
        self.inner.ids().into_iter().try_for_each(|id| self.set_clock_offset(id, 0))
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

    /// Brings every member back: resumes paused ones and starts stopped ones.
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
        self.statuses_of(&self.ids(), http, deadline).await
    }

    /// `GET /cluster/status` of those of `ids` that run unpaused, within `deadline`.
    pub async fn statuses_of(
        &self,
        ids: &[u64],
        http: &reqwest::Client,
        deadline: Instant,
    ) -> Vec<Result<StatusView, String>> {
        let mut out = Vec::new();
        for id in ids.iter().copied().filter(|id| self.is_up(*id)) {
            let url = format!("{}/cluster/status", self.url(id));
            let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            let got = tokio::time::timeout(remaining, async {
                let resp = http.get(&url).send().await.map_err(|e| e.to_string())?;
                let body: Value = resp.json().await.map_err(|e| e.to_string())?;
                let d = &body["data"];
                let members = |voter: bool| -> Vec<u64> {
                    let list = d["members"].as_array().map(Vec::as_slice).unwrap_or_default();
                    list.iter()
                        .filter(|m| m["voter"].as_bool() == Some(voter))
                        .filter_map(|m| m["id"].as_u64())
                        .collect()
                };
                Ok(StatusView {
                    id,
                    role: d["role"].as_str().unwrap_or("?").to_string(),
                    term: d["term"].as_u64().unwrap_or(0),
                    leader: d["leader"].as_u64(),
                    applied: d["appliedIndex"].as_u64().unwrap_or(0),
                    voters: members(true),
                    learners: members(false),
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
        self.leader_view(http, deadline).await.map(|s| s.id)
    }

    /// The status of the member that calls itself leader with the highest term.
    pub async fn leader_view(&self, http: &reqwest::Client, deadline: Instant) -> Option<StatusView> {
        self.statuses(http, deadline).await.into_iter().flatten().filter(|s| s.role == "leader").max_by_key(|s| s.term)
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

    /// Kills every node still running, members or not (end of run).
    pub fn stop_all(&mut self) {
        for id in self.inner.ids() {
            if self.inner.is_paused(id) {
                let _ = self.resume(id);
            }
            self.kill(id);
        }
    }
}

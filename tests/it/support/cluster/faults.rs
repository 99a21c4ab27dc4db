//! What the chaos harness needs of a cluster beyond the integration tests: nodes at chosen
//! addresses (each its own loopback IP inside a network namespace) run by a chosen build,
//! SIGSTOP and SIGCONT (and SIGHUP, which the TLS reload tests send too), and exits collected
//! as findings instead of panics.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Cluster, Node, Running};

impl Cluster {
    /// Process nodes 1..=n at `addrs` (`(ip, port)`), their data dirs and logs under `dir`
    /// (which the caller owns), run by `bin`, none started. The first `initial` form one
    /// cluster via `--peers`; the others are spares that can join it (`try_start_joining`).
    pub fn at(dir: &Path, addrs: &[(String, u16)], initial: usize, bin: PathBuf, extra: Vec<String>) -> Cluster {
        let nodes: Vec<Node> = addrs
            .iter()
            .enumerate()
            .map(|(i, (ip, port))| {
                let id = i as u64 + 1;
                Node {
                    id,
                    addr: format!("{ip}:{port}"),
                    data_dir: dir.join(format!("node{id}")),
                    log_path: dir.join(format!("node{id}.log")),
                    child: None,
                    paused: false,
                    listener: None,
                    join: None,
                    own_args: Vec::new(),
                    own_env: Vec::new(),
                }
            })
            .collect();
        let peers = Some(nodes[..initial].iter().map(|n| format!("{}={}", n.id, n.addr)).collect::<Vec<_>>().join(","));
        Cluster {
            dir: None,
            nodes,
            peers,
            leader: None,
            http: super::Http::new(),
            extra_args: extra,
            scheme: "http",
            in_process: false,
            bin,
        }
    }

    /// Starts node `id` with `--join <url of via>` instead of `--peers`, reporting a failure to
    /// start instead of panicking.
    pub fn try_start_joining(&mut self, id: u64, via: u64) -> Result<(), String> {
        let join = self.url(via);
        self.node_mut(id).join = Some(join);
        self.try_start_node(id)
    }

    /// Running and not paused.
    pub fn is_up(&self, id: u64) -> bool {
        let node = self.node(id);
        node.child.is_some() && !node.paused
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.node(id).paused
    }

    /// SIGSTOP to this node's own PID.
    pub fn pause(&mut self, id: u64) -> Result<(), String> {
        self.signal(id, "STOP")?;
        self.node_mut(id).paused = true;
        Ok(())
    }

    /// SIGCONT to this node's own PID (a node that is not running is simply not paused).
    pub fn resume(&mut self, id: u64) -> Result<(), String> {
        if self.node(id).child.is_some() {
            self.signal(id, "CONT")?;
        }
        self.node_mut(id).paused = false;
        Ok(())
    }

    /// SIGHUP to this node's own PID: reload its TLS files.
    pub fn hangup(&self, id: u64) -> Result<(), String> {
        self.signal(id, "HUP")
    }

    fn signal(&self, id: u64, signal: &str) -> Result<(), String> {
        let Some(Running::Child(child)) = &self.node(id).child else {
            return Err(format!("node {id} is not a running process"));
        };
        let pid = child.id().to_string();
        match Command::new("kill").arg(format!("-{signal}")).arg(&pid).status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("kill -{signal} {pid} failed: {s}")),
            Err(e) => Err(format!("cannot run kill -{signal} {pid}: {e}")),
        }
    }

    /// Nodes that exited on their own since the last call, described (and forgotten): for the
    /// chaos harness a crash is a finding to report, not a reason to stop the run.
    pub fn reap(&mut self) -> Vec<String> {
        let mut exits = Vec::new();
        for node in &mut self.nodes {
            if let Some(Running::Child(child)) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exits.push(format!(
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
        exits
    }
}

//! `Cluster`: owns the nodes of one test — their ports, data dirs and log files in one
//! tempdir — and starts, kills, terminates and restarts them. A cluster's nodes are either
//! `cairn serve` child processes (the process tier) or servers inside the test process
//! (`in_process*`, the in-process tier: see `inproc.rs`); the same tests' helpers serve both.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod faults;

use super::inproc::InProcNode;
use super::process::{cairn_command_for, log_tail, wait_until_exit};
use super::{free_ports, Http, POLL_EVERY};

/// Lines of each node's log printed by `dump_logs`.
const LOG_TAIL_LINES: usize = 80;

/// A running node: a child process, or a server inside this process.
enum Running {
    Child(Child),
    InProc(InProcNode),
}

/// One node's fixed identity and, while it runs, its process or in-process server.
struct Node {
    id: u64,
    addr: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Running>,
    /// Stopped with SIGSTOP (`pause`) and not yet resumed.
    paused: bool,
    /// In-process nodes: the listener bound at `prepare`, handed to the server at its first
    /// start (so no other test can take the port in between).
    listener: Option<std::net::TcpListener>,
    /// `--join` target when the node joins an existing cluster instead of using `--peers`.
    join: Option<String>,
    /// `cairn serve` arguments for this node only (e.g. its own `--tls-cert`).
    own_args: Vec<String>,
    /// Environment variables for this node's process only (e.g. a storage failpoint).
    own_env: Vec<(String, String)>,
}

/// A set of `cairn serve` processes on loopback sharing one tempdir. Node ids are 1..=n.
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    nodes: Vec<Node>,
    /// `--peers` value, or `None` for a single node started without it.
    peers: Option<String>,
    /// The leader agreed on by the last successful `wait_for_leader`.
    leader: Option<u64>,
    pub http: Http,
    /// Extra `cairn serve` arguments for every node (e.g. `--admin-token`), applied at each
    /// (re)start.
    pub extra_args: Vec<String>,
    /// `http` or `https`: the scheme of `url`, for clusters started with `--tls-cert`.
    pub scheme: &'static str,
    /// Nodes run inside this process (`in_process*`) instead of as child processes.
    in_process: bool,
    /// The binary processes run: the one `cargo test` built unless set (`Cluster::at`).
    bin: PathBuf,
}

impl Cluster {
    /// Prepares `n` nodes (ports, data dirs, log files) that form one cluster via `--peers`,
    /// without starting any of them; start them with `start_node`.
    pub fn prepare(n: usize) -> Self {
        assert!(n >= 1, "a cluster needs at least one node");
        Self::prepare_inner(n, true)
    }

    fn prepare_inner(n: usize, with_peers: bool) -> Self {
        Self::prepare_tier(n, with_peers, false)
    }

    fn prepare_tier(n: usize, with_peers: bool, in_process: bool) -> Self {
        let dir = tempfile::Builder::new().prefix("cairn-it-").tempdir().expect("create tempdir");
        // In-process nodes keep their bound listeners; processes need the port free to bind.
        let mut listeners: Vec<Option<std::net::TcpListener>> = if in_process {
            (0..n)
                .map(|_| Some(std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port")))
                .collect()
        } else {
            (0..n).map(|_| None).collect()
        };
        let ports: Vec<u16> = if in_process {
            listeners.iter().map(|l| l.as_ref().and_then(|l| l.local_addr().ok()).expect("local_addr").port()).collect()
        } else {
            free_ports(n)
        };
        let nodes: Vec<Node> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let id = i as u64 + 1;
                Node {
                    id,
                    addr: format!("127.0.0.1:{port}"),
                    data_dir: dir.path().join(format!("node{id}")),
                    log_path: dir.path().join(format!("node{id}.log")),
                    child: None,
                    paused: false,
                    listener: listeners[i].take(),
                    join: None,
                    own_args: Vec::new(),
                    own_env: Vec::new(),
                }
            })
            .collect();
        let peers =
            with_peers.then(|| nodes.iter().map(|n| format!("{}={}", n.id, n.addr)).collect::<Vec<_>>().join(","));
        Self {
            dir: Some(dir),
            nodes,
            peers,
            leader: None,
            http: Http::new(),
            extra_args: Vec::new(),
            scheme: "http",
            in_process,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_cairn")),
        }
    }

    /// `n` in-process nodes forming one cluster via `--peers` (one node: no `--peers`, a
    /// single-node cluster), each with `extra` `cairn serve` arguments, all started.
    pub fn in_process(n: usize, extra: &[&str]) -> Self {
        let mut cluster = Self::prepare_tier(n, n > 1, true);
        cluster.extra_args = extra.iter().map(|s| s.to_string()).collect();
        for id in 1..=n as u64 {
            cluster.start_node(id);
        }
        cluster
    }

    /// One in-process node, a single-node cluster, with `extra` `cairn serve` arguments.
    pub fn in_process_single(extra: &[&str]) -> Self {
        Self::in_process(1, extra)
    }

    /// Starts `n` nodes with `--peers`, in id order, without delay.
    pub fn start(n: usize) -> Self {
        let mut cluster = Self::prepare(n);
        for id in 1..=n as u64 {
            cluster.start_node(id);
        }
        cluster
    }

    /// Starts `n` nodes with `--peers` in the given id order, `gap` apart.
    pub async fn start_with_order(n: usize, order: &[u64], gap: Duration) -> Self {
        let mut cluster = Self::prepare(n);
        for (i, id) in order.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            cluster.start_node(*id);
        }
        cluster
    }

    /// One node started without `--peers` (a single-node cluster), id 1.
    pub fn single() -> Self {
        Self::single_with(&[])
    }

    /// Like [`Cluster::single`], with extra `cairn serve` arguments.
    pub fn single_with(extra: &[&str]) -> Self {
        let mut cluster = Self::prepare_inner(1, false);
        cluster.extra_args = extra.iter().map(|s| s.to_string()).collect();
        cluster.start_node(1);
        cluster
    }

    /// Like [`Cluster::start`], with extra `cairn serve` arguments for every node.
    pub fn start_with(n: usize, extra: &[&str]) -> Self {
        let mut cluster = Self::prepare(n);
        cluster.extra_args = extra.iter().map(|s| s.to_string()).collect();
        for id in 1..=n as u64 {
            cluster.start_node(id);
        }
        cluster
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// The `cairn serve` arguments node `id` is (re)started with.
    pub fn serve_args(&self, id: u64) -> Vec<String> {
        let node = self.node(id);
        let mut args = vec![
            "serve".to_string(),
            "--id".to_string(),
            id.to_string(),
            "--listen".to_string(),
            node.addr.clone(),
            "--data-dir".to_string(),
            node.data_dir.display().to_string(),
        ];
        match (&node.join, &self.peers) {
            (Some(join), _) => args.extend(["--join".to_string(), join.clone()]),
            (None, Some(peers)) => args.extend(["--peers".to_string(), peers.clone()]),
            (None, None) => {}
        }
        args.extend(self.extra_args.iter().cloned());
        args.extend(node.own_args.iter().cloned());
        args
    }

    /// Sets `cairn serve` arguments for node `id` alone, applied at each (re)start.
    pub fn set_node_args(&mut self, id: u64, args: &[&str]) {
        self.node_mut(id).own_args = args.iter().map(|s| s.to_string()).collect();
    }

    /// Sets environment variables for node `id`'s process alone, applied at each (re)start
    /// (after the harness removed every inherited `CAIRN_*` one). Process tier only.
    pub fn set_node_env(&mut self, id: u64, vars: &[(&str, &str)]) {
        self.node_mut(id).own_env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// Starts node `id` (it must not be running). A process appends stdout and stderr to its
    /// log; an in-process node serves on its prepared listener (or its address again, after a
    /// `terminate`).
    pub fn start_node(&mut self, id: u64) {
        if let Err(e) = self.try_start_node(id) {
            panic!("{e}");
        }
    }

    /// [`Cluster::start_node`] that reports a failure to start instead of panicking.
    pub fn try_start_node(&mut self, id: u64) -> Result<(), String> {
        let args = self.serve_args(id);
        let (in_process, bin) = (self.in_process, self.bin.clone());
        let node = self.node_mut(id);
        if node.child.is_some() {
            return Err(format!("node {id} is already running"));
        }
        if in_process {
            assert!(node.own_env.is_empty(), "in-process nodes share the test's environment");
            let listener = match node.listener.take() {
                Some(l) => l,
                None => std::net::TcpListener::bind(&node.addr).map_err(|e| format!("bind {}: {e}", node.addr))?,
            };
            node.child = Some(Running::InProc(InProcNode::start(format!("cairn-node-{id}"), &args[1..], listener)));
            return Ok(());
        }
        let open_log = || OpenOptions::new().create(true).append(true).open(&node.log_path);
        let mut log = open_log().map_err(|e| format!("open {}: {e}", node.log_path.display()))?;
        let stderr = log.try_clone().map_err(|e| format!("clone log handle: {e}"))?;
        let stdout = log.try_clone().map_err(|e| format!("clone log handle: {e}"))?;
        let mut cmd = cairn_command_for(&bin);
        cmd.args(&args).envs(node.own_env.iter().cloned()).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        // Marks each (re)start in the log, so a dump shows which incarnation said what.
        let _ = writeln!(log, "=== harness: started node {id} pid {} args {args:?} env {:?}", child.id(), node.own_env);
        node.child = Some(Running::Child(child));
        node.paused = false;
        Ok(())
    }

    /// `total` prepared nodes of which the first `initial` form the cluster via `--peers` and
    /// are started; the others can be started with `start_joining`.
    pub fn start_growable(total: usize, initial: usize, extra: &[&str]) -> Self {
        let mut cluster = Self::prepare(total);
        cluster.extra_args = extra.iter().map(|s| s.to_string()).collect();
        cluster.peers =
            Some(cluster.nodes[..initial].iter().map(|n| format!("{}={}", n.id, n.addr)).collect::<Vec<_>>().join(","));
        for id in 1..=initial as u64 {
            cluster.start_node(id);
        }
        cluster
    }

    /// Starts node `id` with `--join <url of via>` instead of `--peers`.
    pub fn start_joining(&mut self, id: u64, via: u64) {
        let join = self.url(via);
        self.node_mut(id).join = Some(join);
        self.start_node(id);
    }

    /// Starts a stopped node again with the same arguments and data dir.
    pub fn restart(&mut self, id: u64) {
        self.start_node(id);
    }

    /// SIGKILL via `Child::kill` (this child's own PID only), then reaps it. Process tier only:
    /// an in-process node cannot be crashed.
    pub fn kill(&mut self, id: u64) {
        let node = self.node_mut(id);
        let Some(Running::Child(mut child)) = node.child.take() else {
            panic!("node {id} is not a running process (kills belong to the process tier)")
        };
        let _ = child.kill();
        let _ = child.wait();
        node.paused = false;
        if let Ok(mut log) = OpenOptions::new().append(true).open(&node.log_path) {
            let _ = writeln!(log, "=== harness: SIGKILLed node {id} pid {}", child.id());
        }
        if self.leader == Some(id) {
            self.leader = None;
        }
    }

    /// SIGKILLs every running node before reaping any, so none outlives the others by the time
    /// it takes to reap a process (a whole-cluster crash or power cut). Process tier only.
    pub fn kill_all(&mut self) {
        let mut killed = Vec::new();
        for node in &mut self.nodes {
            assert!(
                !matches!(node.child, Some(Running::InProc(_))),
                "node {} is in-process (kills belong to the process tier)",
                node.id
            );
            if let Some(Running::Child(mut child)) = node.child.take() {
                let _ = child.kill();
                killed.push((node.id, child));
            }
        }
        for (id, mut child) in killed {
            let _ = child.wait();
            let node = self.node_mut(id);
            node.paused = false;
            if let Ok(mut log) = OpenOptions::new().append(true).open(&node.log_path) {
                let _ = writeln!(log, "=== harness: SIGKILLed node {id} pid {} (with every other node)", child.id());
            }
        }
        self.leader = None;
    }

    /// Sends SIGTERM to this node's own PID and waits for it to exit, at most until
    /// `deadline`; returns its exit status. Panics (and `Drop` then SIGKILLs it) if it is
    /// still running at the deadline.
    pub async fn terminate(&mut self, id: u64, deadline: Instant) -> ExitStatus {
        let Some(Running::Child(mut child)) = self.node_mut(id).child.take() else {
            panic!("node {id} is not a running process (SIGTERM belongs to the process tier)")
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill").arg("-TERM").arg(&pid).status();
        let outcome = match sent {
            Ok(s) if s.success() => wait_until_exit(&mut child, deadline).await,
            Ok(s) => Err(format!("kill -TERM {pid} failed: {s}")),
            Err(e) => Err(format!("cannot run kill -TERM {pid}: {e}")),
        };
        match outcome {
            Ok(status) => {
                if self.leader == Some(id) {
                    self.leader = None;
                }
                status
            }
            Err(why) => {
                // Hand the child back so `Drop` SIGKILLs and reaps it.
                self.node_mut(id).child = Some(Running::Child(child));
                panic!("terminating node {id}: {why}");
            }
        }
    }

    /// Waits, at most until `deadline`, for a node to exit on its own (nothing is signalled);
    /// returns its exit status. Panics (and `Drop` then SIGKILLs it) if it is still running.
    pub async fn wait_for_exit(&mut self, id: u64, deadline: Instant) -> ExitStatus {
        let Some(Running::Child(mut child)) = self.node_mut(id).child.take() else {
            panic!("node {id} is not a running process")
        };
        match wait_until_exit(&mut child, deadline).await {
            Ok(status) => status,
            Err(why) => {
                self.node_mut(id).child = Some(Running::Child(child));
                panic!("node {id} did not exit: {why}");
            }
        }
    }

    /// The exit status of node `id` if its process has exited on its own (it is then no longer
    /// running), without waiting; `None` while it runs.
    pub fn exit_status(&mut self, id: u64) -> Option<ExitStatus> {
        let node = self.node_mut(id);
        let Some(Running::Child(child)) = node.child.as_mut() else { return None };
        let status = child.try_wait().expect("try_wait on node")?;
        node.child = None;
        Some(status)
    }

    /// Panics if a node this harness started has exited on its own.
    pub fn assert_running(&mut self) {
        for node in &mut self.nodes {
            let exited = match node.child.as_mut() {
                Some(Running::Child(child)) => child.try_wait().expect("try_wait on node").map(|s| s.to_string()),
                Some(Running::InProc(server)) => server.exit(),
                None => None,
            };
            if let Some(why) = exited {
                let id = node.id;
                node.child = None;
                panic!("node {id} exited unexpectedly: {why}");
            }
        }
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).child.is_some()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn running_ids(&self) -> Vec<u64> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.id).collect()
    }

    /// `host:port` node `id` listens on.
    pub fn addr(&self, id: u64) -> String {
        self.node(id).addr.clone()
    }

    /// `http://host:port` (or `https://`) of node `id`.
    pub fn url(&self, id: u64) -> String {
        format!("{}://{}", self.scheme, self.node(id).addr)
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node(id).data_dir.clone()
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.node(id).log_path.clone()
    }

    /// The leader found by the last `wait_for_leader` (cleared when that node is stopped).
    pub fn leader(&self) -> u64 {
        self.leader.expect("no known leader: call wait_for_leader first")
    }

    pub fn leader_url(&self) -> String {
        self.url(self.leader())
    }

    /// Running nodes other than the known leader.
    pub fn follower_ids(&self) -> Vec<u64> {
        let leader = self.leader();
        self.running_ids().into_iter().filter(|id| *id != leader).collect()
    }

    /// Polls `GET /cluster/status` on every running node until all of them name the same
    /// leader, that leader is running and is the only node reporting role "leader".
    /// Returns (and remembers) its id; panics at `deadline` or if a node exits.
    pub async fn wait_for_leader(&mut self, deadline: Instant) -> u64 {
        let http = self.http.clone();
        let auth = self.admin_authorization();
        loop {
            self.assert_running();
            let running = self.running_ids();
            assert!(!running.is_empty(), "wait_for_leader with no running node");
            let mut statuses = Vec::new();
            for id in &running {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, http.status_as(&self.url(*id), auth.as_deref())).await {
                    Ok(Ok(status)) => statuses.push((*id, status)),
                    Ok(Err(e)) => statuses.push((*id, Value::String(e))),
                    Err(_) => statuses.push((*id, Value::String("deadline reached".into()))),
                }
            }
            let last = match agreed_leader(&statuses, &running) {
                Ok(leader) => {
                    self.leader = Some(leader);
                    return leader;
                }
                Err(why) => why,
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                panic!("no agreed leader by the deadline; last observation: {last}");
            }
            tokio::time::sleep(POLL_EVERY.min(remaining)).await;
        }
    }

    /// `Bearer <token>` when the nodes run with `--admin-token`.
    pub fn admin_authorization(&self) -> Option<String> {
        let i = self.extra_args.iter().position(|a| a == "--admin-token")?;
        self.extra_args.get(i + 1).map(|t| format!("Bearer {t}"))
    }

    /// Prints the last lines of every node's log to stderr (shown for failing tests).
    pub fn dump_logs(&self) {
        if self.in_process {
            eprintln!("(in-process nodes write no log files; rerun the test in the process tier for logs)");
            return;
        }
        for node in &self.nodes {
            eprintln!("===== node {} log tail ({}) =====", node.id, node.log_path.display());
            eprintln!("{}", log_tail(&node.log_path, LOG_TAIL_LINES));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Every in-process node is asked to stop before any is waited for, so none waits out
        // its peers' departures one by one.
        for node in &mut self.nodes {
            if let Some(Running::InProc(server)) = node.child.as_mut() {
                server.ask_to_stop();
            }
        }
        for node in &mut self.nodes {
            match node.child.take() {
                Some(Running::Child(mut child)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                // Dropping an in-process node stops it (bounded; see `InProcNode`).
                Some(Running::InProc(server)) => drop(server),
                None => {}
            }
        }
        if std::thread::panicking() {
            self.dump_logs();
        }
        if std::env::var_os("CAIRN_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("keeping test directory {}", dir.keep().display());
            }
        }
    }
}

/// `Ok(leader)` when every running node answered, all name the same running leader, and
/// exactly that node reports role "leader"; otherwise a description of what was seen.
fn agreed_leader(statuses: &[(u64, Value)], running: &[u64]) -> Result<u64, String> {
    let seen = || statuses.iter().map(|(id, s)| format!("node {id}: {s}")).collect::<Vec<_>>().join("; ");
    let mut named = BTreeSet::new();
    let mut leaders_by_role = Vec::new();
    for (id, status) in statuses {
        if !status.is_object() {
            return Err(seen());
        }
        match status["leader"].as_u64() {
            Some(leader) => named.insert(leader),
            None => return Err(seen()),
        };
        if status["role"] == "leader" {
            leaders_by_role.push(*id);
        }
    }
    match (named.len(), leaders_by_role.as_slice()) {
        (1, [by_role]) => {
            let leader = *named.iter().next().expect("one element");
            if leader == *by_role && running.contains(&leader) {
                Ok(leader)
            } else {
                Err(seen())
            }
        }
        _ => Err(seen()),
    }
}

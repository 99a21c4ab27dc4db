//! The core: a running node. Storage opened, Raft started, and the operations the HTTP edge
//! calls (write, read at a consistency level, wait for an index, status). Nothing in this
//! folder knows HTTP; the edge translates [`error::Error`] to status codes.
//!
//! # Layout
//! - `mod.rs`: [`Node`]: start-up, status and readiness, writes, reads, shutdown
//! - `batcher`: packs concurrent writes into one Raft entry on the leader
//! - `read_barrier`: shares ReadIndex rounds between concurrent strong reads
//! - `membership`: adding and removing members, retired ids, the `--join` loop
//! - `ttl`: the leader's expiry ticker
//! - `holders`: which members have held data, so one that lost it cannot rejoin as itself
//! - `marking`: the leader's round that records them
//! - `disk`: refusing client writes on a full disk, and stopping on a storage failure
//! - `error`: the core's error classes and why a node could not start

pub(crate) mod batcher;
pub(crate) mod disk;
pub mod error;
pub(crate) mod holders;
pub(crate) mod marking;
pub(crate) mod membership;
pub(crate) mod read_barrier;
pub(crate) mod ttl;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState, SnapshotPolicy};

use tokio::sync::{mpsc, oneshot};

use crate::config::NodeConfig;
use crate::model::command::{Command, Item, Limits, Proposal};
use crate::model::types::{NodeId, Raft};
use crate::net::campaign::Campaign;
use crate::net::{self, Network};
use crate::protocol::now_ms;
use crate::sm::{SmReader, StateMachine, TokenRecord};
use crate::wal::LogStore;
use batcher::{Pending, WriteResult};
use error::{Error, StartError};
use read_barrier::{ReadBarrier, RoundError};

const IDENTITY_FILE: &str = "cairn-node-id";

pub struct Node {
    pub id: NodeId,
    pub raft: Raft,
    pub reader: SmReader,
    pub config: NodeConfig,
    /// Queue into the leader's write batcher.
    batch_tx: mpsc::Sender<Pending>,
    /// Serializes membership changes on this leader (see `membership`).
    pub(crate) membership_lock: tokio::sync::Mutex<()>,
    /// Node-to-node HTTP (bound to this node's address), for joining and learner checks.
    pub(crate) peer_http: reqwest::Client,
    /// Shares ReadIndex rounds between concurrent strong reads.
    read_barrier: ReadBarrier,
    /// The term in which this process last committed an entry as leader (see `confirm_term`).
    confirmed_term: AtomicU64,
    /// The data dir held no Raft state at start: only such a node may `--join` (a node that
    /// already has a log is a member, or was one, and must not ask again).
    pub(crate) started_empty: bool,
    /// The free-space reserve for client writes, and the WAL's health (see `disk`).
    pub(crate) disk: disk::Disk,
    /// Starts elections this node's timer would start too late (see `net::campaign`).
    pub(crate) campaign: Arc<Campaign>,
}

/// Raft figures for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub term: u64,
    /// Leader, still a voter, and acknowledged by a quorum within the election timeout.
    pub is_leader: bool,
    /// Leader only: ms since a quorum last acknowledged it.
    pub quorum_ack_ms: Option<u64>,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub applied_index: u64,
    /// Known on the leader only: the highest index a quorum of voters holds.
    pub commit_index: Option<u64>,
    pub snapshot_index: u64,
    pub purged_index: u64,
    /// Leader only: entries each peer is behind the leader's log.
    pub replication_lag: Vec<(NodeId, u64)>,
}

/// Readiness tolerates this many applied-but-not-yet entries before a node reports not ready.
const READY_LAG_ENTRIES: u64 = 1_000;

/// A member as this node's membership lists it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
    /// The cluster recorded that this member has held its data (see `holders`).
    pub held_data: bool,
}

/// What a node reports about itself on every response and in `/cluster/status`.
#[derive(Debug, Clone)]
pub struct Status {
    pub id: NodeId,
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// Leader only: ms since a quorum last acknowledged it.
    pub quorum_ack_ms: Option<u64>,
    pub members: Vec<Member>,
    pub last_log_index: u64,
    pub applied_index: u64,
}

/// Leader by Raft's own state and still a voter: a leader removed from the membership keeps
/// naming itself as leader for a while, but must not take writes or reads any more.
fn is_leader(raft: &Raft, id: NodeId) -> bool {
    let rx = raft.metrics();
    let m = rx.borrow();
    m.current_leader == Some(id)
        && m.state == ServerState::Leader
        && m.membership_config.membership().voter_ids().any(|v| v == id)
}

/// The leader this node knows of. openraft keeps naming a node as leader after it was removed
/// from the membership (it then reports the learner state): such a claim about itself is not
/// a leader anyone can use, so it reads as none.
fn known_leader(m: &RaftMetrics<NodeId, BasicNode>, id: NodeId) -> Option<NodeId> {
    let leader = m.current_leader?;
    let removed_self = leader == id
        && (m.state != ServerState::Leader || !m.membership_config.membership().voter_ids().any(|v| v == id));
    (!removed_self).then_some(leader)
}

fn leader(raft: &Raft, me: NodeId) -> Option<(NodeId, String)> {
    let rx = raft.metrics();
    let m = rx.borrow();
    let id = known_leader(&m, me)?;
    let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
    Some((id, addr))
}

fn not_leader(raft: &Raft, id: NodeId) -> Error {
    match leader(raft, id) {
        Some(l) if l.0 != id => Error::NotLeader { leader: Some(l) },
        _ => Error::NoLeader,
    }
}

/// Submits one entry. Only the leader stamps the wall clock.
async fn propose(raft: Raft, id: NodeId, timeout: Duration, limits: Limits, cmds: Vec<Command>) -> WriteResult {
    // Re-checked here because commands may have queued across a leadership change; until
    // `client_write` is called nothing has been proposed, so forwarding is still safe.
    if !is_leader(&raft, id) {
        return Err(not_leader(&raft, id));
    }
    let proposal = Proposal { now_ms: now_ms(), limits, cmds: cmds.into() };
    match tokio::time::timeout(timeout, raft.client_write(proposal)).await {
        Err(_) => Err(Error::UnknownOutcome("timed out waiting for commit".into())),
        Ok(Ok(resp)) => Ok((resp.log_id.index, resp.data.results)),
        // Leadership can be lost after the entry was appended; openraft then answers
        // ForwardToLeader although the entry may still commit. Never call that a failure.
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
            Err(Error::UnknownOutcome("leadership changed while the write was in flight".into()))
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => Err(Error::Storage(e.to_string())),
        Ok(Err(RaftError::Fatal(f))) => Err(Error::UnknownOutcome(format!("node stopping: {f}"))),
    }
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

/// Writes a new data dir's identity file (also used by restore).
pub fn write_identity(dir: &Path, id: NodeId) -> std::io::Result<()> {
    let path = dir.join(IDENTITY_FILE);
    let mut f = fs::File::create(&path)?;
    writeln!(f, "{id}")?;
    crate::fsync::file(&f, &path)?;
    crate::fsync::dir(dir)
}

/// Creates `dir` if it is missing, durably: its entry in the parent directory is synced too,
/// or a power cut could lose a data dir a node had already acknowledged writes from. (Where
/// the deployment makes the data dir, as systemd and volumes do, this finds it and does nothing.)
pub fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::fsync::dir(parent)
}

/// Pins a data dir to one node id, so a misconfigured restart cannot impersonate another node.
fn check_identity(dir: &Path, id: NodeId) -> Result<(), StartError> {
    let path = dir.join(IDENTITY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found: NodeId = text
                .trim()
                .parse()
                .map_err(|_| StartError::Config(format!("{} is not a node id file", path.display())))?;
            if found != id {
                return Err(StartError::IdentityMismatch { dir: dir.display().to_string(), found, given: id });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_identity(dir, id).map_err(StartError::io("write node id file"))
        }
        Err(e) => Err(StartError::Io { what: format!("read {}", path.display()), source: e }),
    }
}

impl Node {
    /// `peer_tls` is the client side of mutual TLS between peers (`None`: plain HTTP).
    pub async fn start(
        config: NodeConfig,
        peer_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Arc<Node>, StartError> {
        let id = config.id;
        if !config.peers.is_empty() && !config.peers.iter().any(|(p, _)| *p == id) {
            return Err(StartError::Config(format!("--peers does not list this node's id {id}")));
        }
        create_data_dir(&config.data_dir).map_err(StartError::io("create data dir"))?;
        check_identity(&config.data_dir, id)?;

        let mut log = LogStore::open_with(&config.data_dir.join("wal"), config.wal_segment_bytes)
            .map_err(StartError::io("open WAL"))?;
        log.pipeline_own_appends(id).map_err(StartError::io("start the WAL syncer"))?;
        let durable = log.durability();
        let pristine = log.last_log_id().is_none() && log.current_vote().is_none();
        let mut sm = StateMachine::open(&config.data_dir, &config.sm).map_err(StartError::io("open state machine"))?;
        // `wal/`, `sm/` and `snapshots/` were created by the two opens on a first start, and a
        // new directory survives a power cut only once its parent was synced after it. Without
        // this, the power-loss test's cut removed `wal/` whole on every node, and the cluster
        // came back empty (docs/testing.md, track record). Once per start: cheap.
        crate::fsync::dir(&config.data_dir).map_err(StartError::io("sync the data dir"))?;
        sm.wait_for_wal(durable.clone());
        let disk = disk::Disk::new(&config, durable.clone(), sm.failed());
        let reader = sm.reader();

        let raft_config = openraft::Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_min.as_millis() as u64,
            election_timeout_max: config.election_max.as_millis() as u64,
            // Per chunk; the 200 ms default makes large snapshots retry forever.
            install_snapshot_timeout: 30_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
            max_in_snapshot_log_to_keep: config.snapshot_keep_logs,
            // Entries per AppendEntries RPC. openraft times the RPC out after one heartbeat
            // interval, and batched entries can reach ~4 MiB, so RPCs are kept small; this also
            // keeps a body far under the peer body limit (api::RAFT_BODY_LIMIT).
            max_payload_entries: 16,
            // Smaller chunks than the 3 MiB default arrive well within an election timeout
            // even on a busy machine, so a follower receiving a large snapshot stays quiet.
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;

        let local_ip = Some(config.listen.ip()).filter(|ip| !ip.is_unspecified());
        let secret = config.security.cluster_secret.as_deref();
        let http = net::peer_client(local_ip, secret, peer_tls.clone()).map_err(|e| StartError::Raft(e.to_string()))?;
        if pristine && !config.peers.is_empty() && config.join.is_none() {
            let token = config.security.admin_token.as_deref();
            holders::check_peers(&http, config.peer_scheme(), id, &config.peers, token)
                .await
                .map_err(StartError::Config)?;
        }
        // openraft's leader lease is `election_timeout_max`.
        let campaign = Arc::new(Campaign::new(config.election_max));
        let network = Network::new(
            net::peer_options(local_ip, secret, peer_tls),
            config.peer_scheme(),
            durable,
            campaign.clone(),
        );
        let raft = Raft::new(id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        campaign.set_raft(raft.clone());

        if !config.peers.is_empty() && config.join.is_some() {
            return Err(StartError::Config("give either --peers (a new cluster) or --join (an existing one)".into()));
        }
        // A joining node waits to be added by the cluster; it must never found one of its own.
        // Of the `--peers`, only the lowest id founds the cluster: the others wait, with no
        // membership, until its leader reaches them. If every peer initialized, a peer started
        // after a leader was elected would stand for election in term 1 before hearing from
        // it, and in openraft's vote order a higher node id outranks the sitting leader of the
        // same term: the leader stepped down and a second election followed (issue 14).
        let founder = config.peers.iter().map(|(i, _)| *i).min().unwrap_or(id);
        if pristine && config.join.is_none() && founder == id {
            let members: BTreeMap<NodeId, BasicNode> = if config.peers.is_empty() {
                BTreeMap::from([(id, BasicNode::new(config.advertise.clone()))])
            } else {
                config.peers.iter().map(|(i, a)| (*i, BasicNode::new(a.clone()))).collect()
            };
            match raft.initialize(members).await {
                Ok(()) => tracing::info!("initialized a new cluster"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(StartError::Raft(e.to_string())),
            }
        } else if pristine && config.join.is_none() {
            tracing::info!(founder, "waiting for node {founder}, the lowest id in --peers, to form the cluster");
        }
        let (batch_tx, batch_rx) = mpsc::channel(4096);
        let (r, timeout) = (raft.clone(), config.write_timeout);
        let limits = Limits { max_keys_per_namespace: config.quotas.max_keys_per_namespace };
        tokio::spawn(batcher::run(batch_rx, move |cmds| propose(r.clone(), id, timeout, limits, cmds)));
        let node = Arc::new(Node {
            id,
            raft,
            reader,
            config,
            batch_tx,
            membership_lock: tokio::sync::Mutex::new(()),
            peer_http: http,
            read_barrier: ReadBarrier::default(),
            confirmed_term: AtomicU64::new(0),
            started_empty: pristine,
            disk,
            campaign,
        });
        Ok(node)
    }

    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Follower => "follower",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(i, n)| Member {
                id: *i,
                addr: n.addr.clone(),
                voter: voters.contains(i),
                held_data: holders::has_held_data(&self.reader, *i),
            })
            .collect();
        Status {
            id: self.id,
            role,
            term: m.current_term,
            leader: known_leader(&m, self.id),
            quorum_ack_ms: self.quorum_ack_ms(&m),
            members,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
        }
    }

    pub fn gauges(&self) -> Gauges {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let is_leader = known_leader(&m, self.id) == Some(self.id);
        let quorum_ack_ms = self.quorum_ack_ms(&m);
        let mut g = Gauges {
            term: m.current_term,
            // A leader cut off from its quorum is not one a "no leader" alert may count.
            is_leader: self.quorum_acked_recently(&m),
            quorum_ack_ms,
            leader: known_leader(&m, self.id),
            last_log_index: last,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            ..Gauges::default()
        };
        if let (true, Some(rep)) = (is_leader, &m.replication) {
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            let mut matched: Vec<u64> = Vec::new();
            for (peer, at) in rep.iter() {
                let idx = at.map(|l| l.index).unwrap_or(0);
                if *peer != self.id {
                    g.replication_lag.push((*peer, last.saturating_sub(idx)));
                }
                if voters.contains(peer) {
                    matched.push(if *peer == self.id { last } else { idx });
                }
            }
            if !voters.contains(&self.id) || rep.get(&self.id).is_none() {
                matched.push(last);
            }
            matched.sort_unstable_by(|a, b| b.cmp(a));
            let quorum = voters.len() / 2 + 1;
            g.commit_index = matched.get(quorum - 1).copied();
        }
        g
    }

    /// How long a leader may go without a quorum's acknowledgement and still count as one:
    /// the followers' leader lease (openraft sets it to the maximum election timeout) plus
    /// their longest election timeout, the soonest they can have elected someone else.
    /// Anything shorter would flag a healthy leader whose heartbeats a busy machine delayed.
    fn quorum_grace_ms(&self) -> u64 {
        2 * self.config.election_max.as_millis() as u64
    }

    /// On a leader: how long ago a quorum last acknowledged it (`None` on other nodes, and on
    /// a leader no quorum has acknowledged yet).
    fn quorum_ack_ms(&self, m: &RaftMetrics<NodeId, BasicNode>) -> Option<u64> {
        (known_leader(m, self.id) == Some(self.id)).then_some(m.millis_since_quorum_ack).flatten()
    }

    /// On the leader: the members it has replicated to, and itself (see `holders`).
    pub(crate) fn members_with_data(&self) -> Vec<NodeId> {
        let m = self.raft.metrics().borrow().clone();
        let Some(rep) = m.replication.as_ref().filter(|_| self.is_leader()) else { return Vec::new() };
        let mut ids: Vec<NodeId> = rep.iter().filter(|(_, at)| at.is_some()).map(|(id, _)| *id).collect();
        if !ids.contains(&self.id) {
            ids.push(self.id);
        }
        ids
    }

    /// On a leader: a quorum acknowledged it within the grace a leader gets
    /// ([`Node::quorum_grace_ms`]).
    fn quorum_acked_recently(&self, m: &RaftMetrics<NodeId, BasicNode>) -> bool {
        self.quorum_ack_ms(m).is_some_and(|ms| ms <= self.quorum_grace_ms())
    }

    /// Why Raft stopped, once it has stopped on a fatal error.
    pub fn fatal_error(&self) -> Option<String> {
        self.raft.metrics().borrow().running_state.as_ref().err().map(|e| e.to_string())
    }

    /// `Ok` when this node can usefully serve: a leader is known (a leader must also have heard
    /// from a quorum recently) and it has applied within `READY_LAG_ENTRIES` of the commit
    /// index it knows (a follower knows its log's end as the upper bound).
    pub fn readiness(&self) -> Result<(), String> {
        let g = self.gauges();
        let rx = self.raft.metrics();
        let m = rx.borrow();
        if m.running_state.is_err() {
            return Err("raft has stopped".into());
        }
        if !m.membership_config.membership().nodes().any(|(i, _)| *i == self.id)
            && m.membership_config.log_id().is_some()
        {
            return Err("this node is not a member of the cluster (it was removed, or has not been added yet)".into());
        }
        let Some(leader) = known_leader(&m, self.id) else {
            return Err(format!("no known leader ({:?})", m.state));
        };
        if leader == self.id {
            match self.quorum_ack_ms(&m) {
                Some(quiet) if quiet <= self.quorum_grace_ms() => {}
                Some(quiet) => return Err(format!("leader has not heard from a quorum for {quiet} ms")),
                None => return Err("leader has not heard from a quorum yet".into()),
            }
        }
        let known = g.commit_index.unwrap_or(g.last_log_index);
        let lag = known.saturating_sub(g.applied_index);
        if lag > READY_LAG_ENTRIES {
            return Err(format!("applied index {} is {lag} entries behind {known}", g.applied_index));
        }
        Ok(())
    }

    /// The cheap subset of [`Node::status`] stamped on every response.
    /// The applied index comes from the state machine, which raises it before any answer that
    /// depends on the apply can leave; openraft's metrics can still show the one before.
    pub fn leader_and_applied(&self) -> (Option<NodeId>, u64) {
        (known_leader(&self.raft.metrics().borrow(), self.id), self.reader.applied_index())
    }

    pub fn is_leader(&self) -> bool {
        is_leader(&self.raft, self.id)
    }

    /// The leader's id and address, when one is known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        leader(&self.raft, self.id)
    }

    /// The leader this node knows of, with the term it leads, read together.
    pub fn leader_in_term(&self) -> Option<(NodeId, String, u64)> {
        let term = self.raft.metrics().borrow().current_term;
        let (id, addr) = self.leader()?;
        // Read again: a leader read after the term moved belongs to the new term or to none.
        (self.raft.metrics().borrow().current_term == term).then_some((id, addr, term))
    }

    /// Resolves with the new leader once this node knows one other than `from`, in a term
    /// after `term`. A request sent to `from` before then may still have been applied (its
    /// entry can reach the new leader's log), but `from` answering it is no longer to be
    /// counted on: cut off, it may never answer. So a forwarder stops waiting here, with an
    /// unknown outcome, rather than at its timeout. Never resolves once Raft has stopped.
    pub async fn leader_moved(&self, from: NodeId, term: u64) -> NodeId {
        let mut rx = self.raft.metrics();
        loop {
            {
                let m = rx.borrow_and_update();
                if m.current_term > term {
                    if let Some(next) = known_leader(&m, self.id).filter(|l| *l != from) {
                        return next;
                    }
                }
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// `NotLeader` (with the leader, when known) or `NoLeader`.
    pub(crate) fn leader_error(&self) -> Error {
        not_leader(&self.raft, self.id)
    }

    /// Proposes commands through Raft (batched with other clients' commands, see `batcher`)
    /// and returns the entry's log index and each command's result. A follower never proposes:
    /// it answers `NotLeader` and the API layer forwards.
    pub async fn write(&self, cmds: Vec<Command>) -> WriteResult {
        if !self.is_leader() {
            return Err(self.leader_error());
        }
        self.disk.admit(&cmds)?;
        let (done, rx) = oneshot::channel();
        // A closed batcher means the node is stopping; nothing was proposed.
        self.batch_tx.send(Pending { cmds, done }).await.map_err(|_| Error::NoLeader)?;
        rx.await.unwrap_or_else(|_| Err(Error::UnknownOutcome("node stopped with the write in flight".into())))
    }

    /// Confirms leadership with a quorum (ReadIndex) and waits until the state machine has
    /// applied up to the read index; a local read after this is linearizable. A slow quorum
    /// round is retried while this node still leads (see [`Node::leads_in`]), for up to the
    /// write timeout; only then, or once leadership is lost, does the read fail.
    pub async fn linearizable_barrier(&self) -> Result<(), Error> {
        if !self.is_leader() {
            return Err(self.leader_error());
        }
        let term = self.raft.metrics().borrow().current_term;
        self.confirm_term().await?;
        let deadline = tokio::time::Instant::now() + self.config.write_timeout;
        self.read_barrier.wait(deadline, || self.read_index_round(term)).await
    }

    /// One ReadIndex round. openraft gives each round one heartbeat interval to hear from a
    /// quorum; on a loaded machine rounds miss that in bursts of a few hundred milliseconds
    /// while leadership is fine (issue 14 §3), so a `QuorumNotEnough` from a node that still
    /// leads is only a slow round.
    async fn read_index_round(&self, term: u64) -> Result<(), RoundError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) if self.leads_in(term) => {
                Err(RoundError::Slow)
            }
            // Not leader any more, a higher term seen, or no quorum for longer than an election
            // timeout: with a leader known elsewhere the API layer forwards.
            Err(RaftError::APIError(_)) => Err(RoundError::Failed(self.leader_error())),
            Err(RaftError::Fatal(_)) => Err(RoundError::Failed(Error::NoLeader)),
        }
    }

    /// Whether this node still leads in `term`, by the rule of the `cairn_raft_is_leader` gauge:
    /// Raft leader and voter, and acknowledged by a quorum within the election timeout. Past
    /// that the followers may have elected another leader, so a leader cut off from its quorum
    /// stops waiting for it after about an election timeout.
    fn leads_in(&self, term: u64) -> bool {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        m.current_term == term && known_leader(&m, self.id) == Some(self.id) && self.quorum_acked_recently(&m)
    }

    /// Before the first strong read in a leader's term, commits an empty entry of its own.
    /// openraft's read index is max(first entry of the term, committed); a leader that resumed
    /// its term after a restart may know neither the true commit index nor have a fresh entry,
    /// so without this it could read a state behind writes it had acknowledged (found by the
    /// chaos harness: `restarted-leader-serves-stale-strong-reads`).
    async fn confirm_term(&self) -> Result<(), Error> {
        let term = self.raft.metrics().borrow().current_term;
        if self.confirmed_term.load(Ordering::Acquire) == term {
            return Ok(());
        }
        match self.write(Vec::new()).await {
            Ok(_) => {
                self.confirmed_term.store(term, Ordering::Release);
                Ok(())
            }
            Err(Error::UnknownOutcome(_)) => Err(Error::NoLeader),
            Err(e) => Err(e),
        }
    }

    /// Waits (bounded) until this node has applied `index`.
    pub async fn wait_applied(&self, index: u64, bound: Duration) -> Result<(), Error> {
        self.raft
            .wait(Some(bound))
            .applied_index_at_least(Some(index), "minVersion")
            .await
            .map(|_| ())
            .map_err(|_| Error::NotCaughtUp(index))
    }

    /// Reads the local state machine, with no consistency guarantee of its own.
    pub fn read_local(&self, ns: &str, key: &str) -> Result<Option<Item>, Error> {
        self.reader.get(ns, key).map_err(storage)
    }

    /// [`Node::read_local`] with the applied index the answer reflects (`X-Cairn-Index`).
    pub fn read_local_indexed(&self, ns: &str, key: &str) -> Result<(Option<Item>, u64), Error> {
        self.reader.get_indexed(ns, key).map_err(storage)
    }

    /// [`Node::scan_local`] with the applied index the page reflects (`X-Cairn-Index`).
    pub fn scan_local_indexed(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Item>, bool, u64), Error> {
        self.reader.scan_indexed(ns, prefix, after, limit, max_bytes).map_err(storage)
    }

    /// Scans the local state machine; see `SmReader::scan`.
    pub fn scan_local(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Item>, bool), Error> {
        self.reader.scan(ns, prefix, after, limit, max_bytes).map_err(storage)
    }

    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>, Error> {
        self.reader.token(id).map_err(storage)
    }

    pub fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, Error> {
        self.reader.tokens().map_err(storage)
    }

    /// Stops Raft and flushes the state machine; called after the HTTP server drained.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.reader.flush();
    }
}

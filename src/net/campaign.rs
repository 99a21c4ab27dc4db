//! When this node should stand for election before its own timer says so.
//!
//! openraft's timers alone make two kinds of failover slow, and both come down to a survivor
//! whose log is *behind* standing first, which it cannot win:
//!
//! - **A split vote.** Both survivors of a 3-node cluster stand in the same term, each votes for
//!   itself and refuses the other; in openraft's vote order the higher node id outranks the lower
//!   within a term, so when the higher id holds the shorter log neither can win that term. Both
//!   wait out another election timeout, often to collide again (failover under load took up to
//!   2.1 s, in terms +3).
//! - **A follower that refuses a candidate.** A survivor whose log is behind stands alone; the
//!   other refuses it for its log, and would only stand itself when its own timer fires. That
//!   timer can be 700 ms longer than configured: openraft 0.9 lengthens a node's next election
//!   timeout by twice `--election-max-ms` once the node, as a candidate, has seen a longer log
//!   than its own, and clears that mark only when its timer next starts an election. The mark
//!   outlives the election that set it, so a node that lost one split vote stood 1.4 s after the
//!   leader's death at the next failover (the 1.5 s kills in docs/operations.md).
//!
//! In both cases this node holds the log that can win, so it stands at once. Only liveness is
//! at stake: starting an election is always safe, a refusal for the log happens only after the
//! refusing node's own leader lease ran out (so a sitting leader that still reaches this node is
//! never deposed), and this starts at most one election per term.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use openraft::raft::{VoteRequest, VoteResponse};

use crate::model::types::{NodeId, TypeConfig};

pub struct Campaign {
    raft: OnceLock<openraft::Raft<TypeConfig>>,
    /// openraft's leader lease (`--election-max-ms`): how long a follower refuses candidates
    /// after it last heard from its leader.
    lease: Duration,
    epoch: Instant,
    /// When this node last accepted entries or a heartbeat from a leader, in ms since `epoch`
    /// plus one (0: never).
    leader_seen: AtomicU64,
    /// The highest term this node has stood in on its own account: one extra election per term.
    stood: AtomicU64,
}

impl Campaign {
    pub fn new(lease: Duration) -> Self {
        Campaign {
            raft: OnceLock::new(),
            lease,
            epoch: Instant::now(),
            leader_seen: AtomicU64::new(0),
            stood: AtomicU64::new(0),
        }
    }

    pub fn set_raft(&self, raft: openraft::Raft<TypeConfig>) {
        let _ = self.raft.set(raft);
    }

    /// A leader's append or snapshot was accepted: its lease on this node's vote runs again.
    pub fn heard_from_leader(&self) {
        self.leader_seen.store(self.epoch.elapsed().as_millis() as u64 + 1, Ordering::Release);
    }

    /// Whether this node has heard from a leader within the lease: if so, openraft refused the
    /// candidate for the lease, not (only) for its log.
    fn lease_held(&self) -> bool {
        match self.leader_seen.load(Ordering::Acquire) {
            0 => false,
            seen => self.epoch.elapsed().as_millis() as u64 + 1 - seen < self.lease.as_millis() as u64,
        }
    }

    /// Called with every vote this node asked for, as a candidate, and the answer it got.
    pub fn asked(&self, req: &VoteRequest<NodeId>, resp: &VoteResponse<NodeId>, target: NodeId) {
        if winnable_split(req, resp, target) {
            self.stand(req.vote.leader_id.term + 1, target, "split vote with a candidate whose log is behind");
        }
    }

    /// Called with every vote request this node answered, and its answer.
    pub fn answered(&self, req: &VoteRequest<NodeId>, resp: &VoteResponse<NodeId>) {
        if refused_for_its_log(req, resp) && !self.lease_held() {
            let peer = req.vote.leader_id.node_id;
            self.stand(resp.vote.leader_id.term + 1, peer, "refused a candidate whose log is behind");
        }
    }

    /// Starts an election now, unless this node already did for `term` or later, or leads.
    fn stand(&self, term: u64, peer: NodeId, why: &'static str) {
        let Some(raft) = self.raft.get() else { return };
        if raft.metrics().borrow().state.is_leader() || self.stood.fetch_max(term, Ordering::AcqRel) >= term {
            return;
        }
        tracing::info!(term, peer, "{why}; standing now");
        let raft = raft.clone();
        tokio::spawn(async move {
            let _ = raft.trigger().elect().await;
        });
    }
}

/// Whether `target` refused this node's vote because it stands for itself in the same term
/// while holding a shorter log: a split that this node, not `target`, can win.
fn winnable_split(req: &VoteRequest<NodeId>, resp: &VoteResponse<NodeId>, target: NodeId) -> bool {
    !resp.vote_granted
        && resp.vote.leader_id.term == req.vote.leader_id.term
        && resp.vote.leader_id.node_id == target
        && resp.last_log_id < req.last_log_id
}

/// Whether this node refused a candidate of a later term whose log is behind its own. (`resp`
/// carries this node's own vote and last log.) A refusal within the leader lease looks the same
/// from here, which is why [`Campaign::answered`] also checks the lease.
fn refused_for_its_log(req: &VoteRequest<NodeId>, resp: &VoteResponse<NodeId>) -> bool {
    !resp.vote_granted && req.vote.leader_id.term > resp.vote.leader_id.term && req.last_log_id < resp.last_log_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, Vote};

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn refused(vote: Vote<NodeId>, last: Option<LogId<NodeId>>) -> VoteResponse<NodeId> {
        VoteResponse { vote, vote_granted: false, last_log_id: last }
    }

    #[test]
    fn only_a_refusal_by_a_same_term_candidate_with_a_shorter_log_is_a_split_to_win() {
        let req = VoteRequest { vote: Vote::new(5, 2), last_log_id: log(4, 100) };
        assert!(winnable_split(&req, &refused(Vote::new(5, 3), log(4, 99)), 3));
        assert!(winnable_split(&req, &refused(Vote::new(5, 3), None), 3));
        // Its log is as long or longer: it may win; leave the timers to it.
        assert!(!winnable_split(&req, &refused(Vote::new(5, 3), log(4, 100)), 3));
        assert!(!winnable_split(&req, &refused(Vote::new(5, 3), log(4, 101)), 3));
        // It voted for another node, or is in a later term: not a two-candidate split.
        assert!(!winnable_split(&req, &refused(Vote::new(5, 1), log(4, 99)), 3));
        assert!(!winnable_split(&req, &refused(Vote::new(6, 3), log(4, 99)), 3));
        // Granted.
        let granted = VoteResponse { vote: Vote::new(5, 2), vote_granted: true, last_log_id: log(4, 99) };
        assert!(!winnable_split(&req, &granted, 3));
    }

    #[test]
    fn only_a_refused_candidate_of_a_later_term_with_a_shorter_log_is_one_to_overtake() {
        // This node (vote T4 for leader 3, log 4-100) was asked by node 1 in term 5.
        let mine = || Vote::new_committed(4, 3);
        let req = |last| VoteRequest { vote: Vote::new(5, 1), last_log_id: last };
        assert!(refused_for_its_log(&req(log(4, 99)), &refused(mine(), log(4, 100))));
        assert!(refused_for_its_log(&req(None), &refused(mine(), log(4, 100))));
        // Its log is as long: the refusal was for the lease (or its term), not its log.
        assert!(!refused_for_its_log(&req(log(4, 100)), &refused(mine(), log(4, 100))));
        // This node is already in the candidate's term (it stands itself, or voted): the
        // candidate side of a split handles that.
        assert!(!refused_for_its_log(&req(log(4, 99)), &refused(Vote::new(5, 2), log(4, 100))));
        // Granted.
        let granted = VoteResponse { vote: Vote::new(5, 1), vote_granted: true, last_log_id: log(4, 100) };
        assert!(!refused_for_its_log(&req(log(4, 99)), &granted));
    }

    #[test]
    fn the_lease_runs_from_the_last_word_from_a_leader() {
        let c = Campaign::new(Duration::from_millis(200));
        assert!(!c.lease_held(), "never heard from a leader");
        c.heard_from_leader();
        assert!(c.lease_held());
        let c = Campaign::new(Duration::ZERO);
        c.heard_from_leader();
        assert!(!c.lease_held(), "a lease of 0 ms has always run out");
    }
}

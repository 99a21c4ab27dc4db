//! Changing who is in the cluster: admitting a node (as a learner first, promoted to voter
//! only once its state machine has caught up), removing one (its id is retired for good), and
//! the `--join` loop a new node runs. One change at a time: a second concurrent request gets
//! `Conflict`, never a queued or wedged joint configuration.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use super::error::Error;
use super::Node;
use crate::model::command::{CmdResult, Command};
use crate::model::types::NodeId;

fn change_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(p))) => {
            Error::Conflict(format!("a membership change is already in progress: {p}"))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => Error::Conflict(c.to_string()),
        // Possibly proposed before leadership moved: the change may still take effect.
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            Error::UnknownOutcome("leadership changed during the membership change".into())
        }
        RaftError::Fatal(f) => Error::UnknownOutcome(format!("node stopping: {f}")),
    }
}

fn membership_guard(node: &Node) -> Result<tokio::sync::MutexGuard<'_, ()>, Error> {
    if !node.is_leader() {
        return Err(node.leader_error());
    }
    node.membership_lock
        .try_lock()
        .map_err(|_| Error::Conflict("another membership change is in progress on this leader".into()))
}

fn voters_and_nodes(node: &Node) -> (BTreeSet<NodeId>, Vec<(NodeId, String)>) {
    let rx = node.raft.metrics();
    let m = rx.borrow();
    let mem = m.membership_config.membership();
    (mem.voter_ids().collect(), mem.nodes().map(|(i, n)| (*i, n.addr.clone())).collect())
}

/// Admits node `id` at `addr`: learner, catch-up of its log and state machine, promotion.
pub async fn add_member(node: &Node, id: NodeId, addr: String) -> Result<(), Error> {
    let _guard = membership_guard(node)?;
    if node.reader.is_retired(id).map_err(|e| Error::Storage(e.to_string()))? {
        return Err(Error::Conflict(format!("node id {id} was removed before; ids are never reused")));
    }
    let (voters, nodes) = voters_and_nodes(node);
    if let Some((_, known)) = nodes.iter().find(|(i, _)| *i == id) {
        if *known != addr {
            return Err(Error::Conflict(format!("node {id} is already a member at {known}")));
        }
        if voters.contains(&id) {
            return Ok(());
        }
    }
    let deadline = Instant::now() + node.config.join_timeout;
    let added =
        tokio::time::timeout(node.config.join_timeout, node.raft.add_learner(id, BasicNode::new(addr.clone()), true))
            .await;
    match added {
        Err(_) => {
            return Err(Error::UnknownOutcome(format!(
                "learner {id} did not catch up its log in time; it stays a learner"
            )))
        }
        Ok(Err(e)) => return Err(change_error(e)),
        Ok(Ok(_)) => {}
    }
    // add_learner returns once the learner's *log* caught up; promote only once its state
    // machine has applied what the leader had applied by now.
    let target = node.leader_and_applied().1;
    wait_learner_applied(node, &addr, target, deadline).await?;
    let promote = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
    match tokio::time::timeout(left, node.raft.change_membership(promote, false)).await {
        Err(_) => Err(Error::UnknownOutcome(format!("promotion of node {id} timed out"))),
        Ok(Err(e)) => Err(change_error(e)),
        Ok(Ok(_)) => Ok(()),
    }
}

async fn wait_learner_applied(node: &Node, addr: &str, target: u64, deadline: Instant) -> Result<(), Error> {
    // `/health` is open and every answer carries the node's applied index, so the admin token
    // never goes to the address an admin named (it may not be a Cairn node at all).
    let url = format!("{}://{addr}/health", node.config.peer_scheme());
    loop {
        let applied = match node.peer_http.get(&url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) => r
                .headers()
                .get(crate::protocol::H_APPLIED)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok()),
            Err(_) => None,
        };
        if applied.is_some_and(|a| a >= target) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::UnknownOutcome(format!(
                "learner at {addr} applied {applied:?} of {target} in time; it stays a learner"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes node `id` (voter or learner) and retires its id. Removing the leader itself is
/// allowed: openraft steps it down once the new configuration commits.
pub async fn remove_member(node: &Node, id: NodeId) -> Result<(), Error> {
    let _guard = membership_guard(node)?;
    let (voters, nodes) = voters_and_nodes(node);
    if !nodes.iter().any(|(i, _)| *i == id) {
        return Err(Error::NotFound(format!("node {id} is not a member")));
    }
    if voters.len() == 1 && voters.contains(&id) {
        return Err(Error::Conflict("cannot remove the last voter".into()));
    }
    // Retire first: if the change below fails, the id is still never reused.
    match node.write(vec![Command::RetireNode { id }]).await? {
        (_, r) if matches!(r.first(), Some(CmdResult::NodeRetired { .. })) => {}
        (_, r) => return Err(Error::Storage(format!("unexpected retire result {r:?}"))),
    }
    let change = if voters.contains(&id) {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    match tokio::time::timeout(node.config.join_timeout, node.raft.change_membership(change, false)).await {
        Err(_) => Err(Error::UnknownOutcome(format!("removal of node {id} timed out"))),
        Ok(Err(e)) => Err(change_error(e)),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Asks the cluster at `join` to admit this node, retrying until admitted or the join timeout.
/// `Err` says why the node can never be admitted as configured: a retired id, a refused
/// credential, or no answer within `--join-timeout`; the server then stops the node with a
/// non-zero exit, so a supervisor or an operator sees it, instead of a node that runs on alone.
pub async fn join_loop(node: std::sync::Arc<Node>, join: String) -> Result<(), String> {
    let base = join.trim_end_matches('/').to_string();
    let base = if base.contains("://") { base } else { format!("{}://{base}", node.config.peer_scheme()) };
    let body = serde_json::json!({"id": node.id, "addr": node.config.advertise});
    let deadline = Instant::now() + node.config.join_timeout;
    loop {
        let mut req =
            node.peer_http.post(format!("{base}/cluster/members")).json(&body).timeout(node.config.join_timeout);
        if let Some(t) = &node.config.security.admin_token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(via = %base, "joined the cluster as a voter");
                return Ok(());
            }
            Ok(r)
                if r.status() == reqwest::StatusCode::UNAUTHORIZED || r.status() == reqwest::StatusCode::FORBIDDEN =>
            {
                let text = r.text().await.unwrap_or_default();
                return Err(format!("join refused ({}): give this node the cluster's --admin-token", text.trim()));
            }
            Ok(r) if r.status().is_client_error() => {
                let text = r.text().await.unwrap_or_default();
                if text.contains("never reused") {
                    return Err(format!(
                        "this node id was retired ({}); start it with a new --id and an empty data dir",
                        text.trim()
                    ));
                }
                tracing::warn!(%text, "join refused; retrying");
            }
            Ok(r) => tracing::warn!(status = %r.status(), "join not accepted yet; retrying"),
            Err(e) => tracing::warn!(error = %e, "join request failed; retrying"),
        }
        if Instant::now() >= deadline {
            return Err("gave up joining after --join-timeout; start the node again to retry".into());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

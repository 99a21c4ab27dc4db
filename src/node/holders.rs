//! Which members have held the cluster's data, so a member that lost its data dir cannot come
//! back under its old id.
//!
//! A node restarted with an empty data dir but its old id looks, to Raft, like a member with an
//! empty log. It grants its vote to any candidate, so it can help elect a leader that lacks
//! writes this node had acknowledged before it lost them: acknowledged writes can be lost. (A
//! founder that lost its data is worse: it founds a new cluster and stands for election with
//! ever higher terms.) Raft cannot tell such a node from a member that never had data, so the
//! cluster records it: the leader marks each member once it has replicated to it, as a key in
//! the private key space (`model/private.rs`; the leader's round is `marking.rs`), and a
//! pristine node started with `--peers` asks its peers whether its id is marked before it
//! does anything (see [`check_peers`]).

use std::time::Duration;

use crate::model::command::{Command, Condition};
use crate::model::types::NodeId;
use crate::sm::SmReader;

/// The private namespace of cluster records.
pub const NS: &str = "\u{1}cairn";

fn key(id: NodeId) -> String {
    format!("held-data/{id}")
}

/// Whether the cluster recorded that member `id` has held its data.
pub fn has_held_data(reader: &SmReader, id: NodeId) -> bool {
    reader.get(NS, &key(id)).ok().flatten().is_some()
}

/// The command recording that each of `ids` has held the cluster's data.
pub fn mark(ids: &[NodeId]) -> Command {
    let set = |id: &NodeId| Command::Set {
        ns: NS.to_string(),
        key: key(*id),
        value: "true".to_string(),
        ttl_ms: None,
        cond: Condition::None,
    };
    Command::Batch(ids.iter().map(set).collect())
}

/// Before a pristine node with `--peers` starts Raft: asks each peer's `/cluster/status`
/// whether this node's id is recorded as having held data. If one says so, the node lost its
/// data and must not rejoin under this id; `Err` says what to do instead. Peers that do not
/// answer within a few seconds are skipped: on a cluster's first start none is up yet.
pub async fn check_peers(
    http: &reqwest::Client,
    scheme: &str,
    id: NodeId,
    peers: &[(NodeId, String)],
    token: Option<&str>,
) -> Result<(), String> {
    for (peer, addr) in peers.iter().filter(|(p, _)| *p != id) {
        let mut req = http.get(format!("{scheme}://{addr}/cluster/status")).timeout(Duration::from_secs(2));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let Ok(resp) = req.send().await else { continue };
        let Ok(body) = resp.json::<serde_json::Value>().await else { continue };
        let held = body["data"]["members"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["id"] == id && m["heldData"] == true));
        if held {
            return Err(format!(
                "this node's data dir is empty, but node {peer} records that node {id} held the cluster's data: \
                 a member that lost its data must not rejoin under its old id (it could help elect a leader \
                 missing writes it had acknowledged). Remove it (`cairn cluster remove {id}`), then start it \
                 with a new --id, an empty data dir and --join"
            ));
        }
    }
    Ok(())
}

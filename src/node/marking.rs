//! The leader's round that records which members have held the cluster's data (see
//! `holders.rs` for why): every second, each member it has replicated to, and itself.

use std::sync::Arc;
use std::time::Duration;

use crate::model::types::NodeId;
use crate::node::{holders, Node};

pub async fn run(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !node.is_leader() {
            continue;
        }
        let unmarked: Vec<NodeId> =
            node.members_with_data().into_iter().filter(|id| !holders::has_held_data(&node.reader, *id)).collect();
        if unmarked.is_empty() {
            continue;
        }
        if let Err(e) = node.write(vec![holders::mark(&unmarked)]).await {
            tracing::debug!(error = %e, "could not record which members hold data yet");
        }
    }
}

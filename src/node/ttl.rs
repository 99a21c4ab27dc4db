//! The leader's expiry ticker. Expiry is a replicated command, not a local timer, so every
//! replica deletes the same keys at the same log index. The ticker proposes `Expire` only when
//! the expiry index holds a key due by the leader's wall clock, so an idle cluster with no TTLs
//! writes nothing.

use std::sync::Arc;

use crate::model::command::Command;
use crate::node::Node;
use crate::protocol::now_ms;

pub async fn run(node: Arc<Node>) {
    let mut tick = tokio::time::interval(node.config.expire_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !node.is_leader() {
            continue;
        }
        let due = node.reader.next_expiry().is_some_and(|at| at <= now_ms());
        if !due {
            continue;
        }
        if let Err(e) = node.write(vec![Command::Expire]).await {
            tracing::debug!(error = %e, "expire tick not applied");
        }
    }
}

//! Removing a deleted bucket's keys. Deleting a bucket removes its lookup and policy records
//! and writes a `gone/{id}` record in the same Raft entry; a sweep then deletes the bucket's
//! keys, [`BATCH`] per entry, and finally the `gone` record. Writes to the bucket can no longer
//! commit (their guard fails), so the set of keys only shrinks.
//!
//! Private keys cannot be deleted through any client API, so a sweep must not be lost: if the
//! leader changes or stops part-way, the next leader finds the `gone` records and finishes the
//! work ([`resume`]), and so does the same leader on its next round.

use std::time::Duration;

use super::bucket::{gone_key, Gone, LOOKUP_NS};
use crate::api::state::AppState;
use crate::model::command::{CmdResult, Command, Condition};

/// Keys deleted per Raft entry.
const BATCH: usize = 100;
/// How often the leader looks for unfinished sweeps.
const RESUME_EVERY: Duration = Duration::from_secs(10);

/// Starts sweeping bucket `id` unless this node already is.
pub fn start(st: &AppState, id: String, gone: Gone) {
    {
        let mut running = st.kvdb_sweeps.lock().unwrap_or_else(|e| e.into_inner());
        if !running.insert(id.clone()) {
            return;
        }
    }
    let st = st.clone();
    tokio::spawn(async move {
        let finished = sweep(&st, &id, &gone).await;
        st.kvdb_sweeps.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        if let Err(why) = finished {
            tracing::warn!(bucket = %id, ns = %gone.namespace, %why, "kvdb bucket sweep stopped; it resumes later");
        }
    });
}

/// The leader's round: restart every sweep that a `gone` record says is unfinished. Runs
/// until the node stops (the server aborts it).
pub async fn resume(st: AppState) {
    let mut tick = tokio::time::interval(RESUME_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !st.node.is_leader() {
            continue;
        }
        let pending = match st.node.scan_local(LOOKUP_NS, "gone/", None, BATCH, usize::MAX) {
            Ok((items, _)) => items,
            Err(e) => {
                tracing::warn!(error = %e, "could not list unfinished kvdb bucket sweeps");
                continue;
            }
        };
        for item in pending {
            let id = item.key.trim_start_matches("gone/").to_string();
            match serde_json::from_str::<Gone>(&item.value) {
                Ok(gone) => start(&st, id, gone),
                Err(e) => tracing::error!(bucket = %id, error = %e, "damaged kvdb sweep record"),
            }
        }
    }
}

/// Deletes every key under the bucket's prefix, then its `gone` record.
async fn sweep(st: &AppState, id: &str, gone: &Gone) -> Result<(), String> {
    let ns = &gone.namespace;
    loop {
        let (items, _) =
            st.node.scan_local(ns, &gone.prefix, None, BATCH, usize::MAX).map_err(|e| format!("scan failed: {e}"))?;
        let last = items.is_empty();
        let mut cmds: Vec<Command> =
            items.into_iter().map(|i| Command::Delete { ns: ns.clone(), key: i.key, cond: Condition::None }).collect();
        if last {
            cmds.push(Command::Delete { ns: LOOKUP_NS.to_string(), key: gone_key(id), cond: Condition::None });
        }
        // A key that expired since the scan is `Absent` in a batch, not a refusal.
        match st.node.write(vec![Command::Batch(cmds)]).await {
            Ok((_, results)) if matches!(results.first(), Some(CmdResult::Batch(_))) => {}
            Ok((_, results)) => return Err(format!("unexpected result {results:?}")),
            Err(e) => return Err(e.to_string()),
        }
        if last {
            return Ok(());
        }
    }
}

//! Write batching on the leader. Concurrent client commands are packed into one Raft entry
//! (one WAL record, one replication slot, one apply batch) and the per-command results fanned
//! back out. At most `MAX_IN_FLIGHT` proposals are outstanding; while they are, new commands
//! queue and form the next, larger batch. A lone client therefore pays no extra latency, and
//! a busy leader writes far fewer entries.
//!
//! A key's `version` is the log index of its last change, so two commands on the same key must
//! never share an entry (they would report the same version for different values); a batch
//! stops at the first command that touches a key already in it. `Expire` touches many keys and
//! always travels alone, as do token changes and lease revocations (which delete the lease's
//! keys); lease grants and keepalives touch no key and go with anything.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::model::command::{CmdResult, Command};
use crate::node::error::Error;

/// Two, not more: measured when openraft 0.9 still flushed each entry on the leader before it
/// replicated it, one entry at a time, so extra proposals only queued inside Raft while
/// splitting the waiting commands into smaller entries (docs/performance.md, "What mattered").
/// Since the leader's fsync moved beside replication (`wal/durable.rs`) four were no better
/// than two at 64 clients (measured in docs/performance.md).
const MAX_IN_FLIGHT: usize = 2;
const MAX_CMDS: usize = 512;
/// Keeps one entry's size reasonable for replication; a single command may exceed it alone.
const MAX_BYTES: usize = 4 << 20;

pub type WriteResult = Result<(u64, Vec<CmdResult>), Error>;

pub struct Pending {
    pub cmds: Vec<Command>,
    pub done: oneshot::Sender<WriteResult>,
}

/// Adds the keys `cmd` touches to `out`, as hashes of (namespace, key) under a per-process
/// random key; false for commands that must travel alone (expiry touches unknown keys; token
/// changes are rare and simplest alone). Hashes, not strings: two keys that collide only end a
/// batch early, which costs nothing but batching, and nobody can aim at a random key.
fn keys_of(cmd: &Command, h: &RandomState, out: &mut Vec<u64>) -> bool {
    match cmd {
        Command::Get { ns, key }
        | Command::Set { ns, key, .. }
        | Command::SetLeased { ns, key, .. }
        | Command::Delete { ns, key, .. }
        | Command::Increment { ns, key, .. }
        | Command::IncrementFenced { ns, key, .. } => {
            out.push(h.hash_one((ns, key)));
            true
        }
        Command::Batch(ops) => ops.iter().all(|op| keys_of(op, h, out)),
        // Two changes of one queue in one entry would give two waiters the same token.
        Command::Enqueue { ns, queue, name, .. } | Command::Dequeue { ns, queue, name, .. } => {
            out.push(h.hash_one((ns, queue.tag(), name)));
            true
        }
        Command::Proclaim { ns, name, .. } => {
            out.push(h.hash_one((ns, crate::model::command::Queue::Election.tag(), name)));
            true
        }
        // They change a lease record only: no key, no version.
        Command::LeaseGrant { .. } | Command::LeaseKeepAlive { .. } => true,
        // A revoke deletes the lease's keys, whichever they are.
        Command::Expire
        | Command::LeaseRevoke { .. }
        | Command::CreateToken { .. }
        | Command::CreateTokenExpiring { .. }
        | Command::RevokeToken { .. }
        | Command::RetireNode { .. } => false,
    }
}

fn size_of(cmd: &Command) -> usize {
    match cmd {
        Command::Set { key, value, .. } | Command::SetLeased { key, value, .. } => key.len() + value.len(),
        Command::Get { key, .. }
        | Command::Delete { key, .. }
        | Command::Increment { key, .. }
        | Command::IncrementFenced { key, .. } => key.len(),
        Command::Batch(ops) => ops.iter().map(size_of).sum(),
        Command::Enqueue { name, value, .. } | Command::Proclaim { name, value, .. } => name.len() + value.len(),
        Command::Dequeue { name, .. } => name.len(),
        Command::Expire
        | Command::LeaseGrant { .. }
        | Command::LeaseKeepAlive { .. }
        | Command::LeaseRevoke { .. }
        | Command::CreateToken { .. }
        | Command::CreateTokenExpiring { .. }
        | Command::RevokeToken { .. }
        | Command::RetireNode { .. } => 64,
    }
}

/// The keys of a pending write, or `None` if it must travel alone.
fn pending_keys(p: &Pending, h: &RandomState) -> Option<Vec<u64>> {
    let mut keys = Vec::with_capacity(p.cmds.len());
    p.cmds.iter().all(|c| keys_of(c, h, &mut keys)).then_some(keys)
}

/// Runs until every sender is dropped. `propose` submits one entry's commands and returns the
/// log index and the results in order.
pub async fn run<F, Fut>(mut rx: mpsc::Receiver<Pending>, propose: F)
where
    F: Fn(Vec<Command>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = WriteResult> + Send + 'static,
{
    let propose = Arc::new(propose);
    let hasher = RandomState::new();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        if let Some(first_keys) = pending_keys(&batch[0], &hasher) {
            let mut keys: HashSet<u64> = first_keys.into_iter().collect();
            let mut bytes: usize = batch[0].cmds.iter().map(size_of).sum();
            let mut n = batch[0].cmds.len();
            while let Ok(p) = rx.try_recv() {
                let p_bytes: usize = p.cmds.iter().map(size_of).sum();
                let joins = n + p.cmds.len() <= MAX_CMDS && bytes + p_bytes <= MAX_BYTES;
                match pending_keys(&p, &hasher) {
                    Some(mine) if joins && mine.iter().all(|k| !keys.contains(k)) => {
                        keys.extend(mine);
                        bytes += p_bytes;
                        n += p.cmds.len();
                        batch.push(p);
                    }
                    _ => {
                        carry = Some(p);
                        break;
                    }
                }
            }
        }
        let propose = propose.clone();
        tokio::spawn(async move {
            let counts: Vec<usize> = batch.iter().map(|p| p.cmds.len()).collect();
            let mut cmds = Vec::with_capacity(counts.iter().sum());
            let mut waiters = Vec::with_capacity(batch.len());
            for p in batch {
                cmds.extend(p.cmds);
                waiters.push(p.done);
            }
            let result = propose(cmds).await;
            drop(permit);
            fan_out(result, &counts, waiters);
        });
    }
}

fn fan_out(result: WriteResult, counts: &[usize], waiters: Vec<oneshot::Sender<WriteResult>>) {
    match result {
        Ok((index, results)) if results.len() == counts.iter().sum::<usize>() => {
            let mut rest = results.into_iter();
            for (n, w) in counts.iter().zip(waiters) {
                let _ = w.send(Ok((index, rest.by_ref().take(*n).collect())));
            }
        }
        Ok(_) => {
            for w in waiters {
                let _ = w.send(Err(Error::Storage("result count mismatch".into())));
            }
        }
        Err(e) => {
            for w in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::command::Condition;
    use std::sync::Mutex;

    fn set(key: &str) -> Command {
        Command::Set { ns: "n".into(), key: key.into(), value: "1".into(), ttl_ms: None, cond: Condition::None }
    }

    /// Queues `writes` before the batcher runs, so it sees them all at once, and returns the
    /// entries it proposed (as the keys each holds).
    async fn entries_for(writes: Vec<Vec<Command>>) -> Vec<Vec<String>> {
        let (tx, rx) = mpsc::channel(64);
        let mut done = Vec::new();
        for cmds in writes {
            let (d, r) = oneshot::channel();
            tx.send(Pending { cmds, done: d }).await.unwrap();
            done.push(r);
        }
        drop(tx);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        run(rx, move |cmds: Vec<Command>| {
            let s = s.clone();
            async move {
                let keys = cmds
                    .iter()
                    .map(|c| match c {
                        Command::Set { key, .. } => key.clone(),
                        other => format!("{other:?}"),
                    })
                    .collect::<Vec<_>>();
                let n = cmds.len();
                let mut all = s.lock().unwrap();
                all.push(keys);
                Ok((all.len() as u64, vec![CmdResult::Deleted { key: String::new() }; n]))
            }
        })
        .await;
        for r in done {
            let (_, results) =
                tokio::time::timeout(std::time::Duration::from_secs(5), r).await.unwrap().unwrap().unwrap();
            assert!(!results.is_empty());
        }
        let out = seen.lock().unwrap().clone();
        out
    }

    #[tokio::test]
    async fn disjoint_writes_share_an_entry_and_a_repeated_key_starts_the_next() {
        let entries = entries_for(vec![vec![set("a")], vec![set("b")], vec![set("a")], vec![set("c")]]).await;
        assert_eq!(entries, vec![vec!["a", "b"], vec!["a", "c"]]);
    }

    #[tokio::test]
    async fn expiry_travels_alone() {
        let entries = entries_for(vec![vec![set("a")], vec![Command::Expire], vec![set("b")]]).await;
        assert_eq!(entries.len(), 3, "{entries:?}");
        assert_eq!(entries[1], vec!["Expire"]);
    }
}

//! Write batching on the leader. Concurrent client commands are packed into one Raft entry
//! (one WAL record, one replication slot, one apply batch) and the per-command results fanned
//! back out. At most `MAX_IN_FLIGHT` proposals are outstanding; while they are, new commands
//! queue and form the next, larger batch. A lone client therefore pays no extra latency, and
//! a busy leader writes far fewer entries.
//!
//! A key's `version` is the log index of its last change, so two commands on the same key must
//! never share an entry (they would report the same version for different values); a batch
//! stops at the first command that touches a key already in it. `Expire` touches many keys and
//! always travels alone, as do token changes.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::{CmdResult, Command};
use crate::error::Error;

/// Two, not more: openraft 0.9 flushes each entry on the leader before it replicates it, one
/// entry at a time, so extra proposals only queue inside Raft while splitting the waiting
/// commands into smaller entries. Measured in docs/performance.md ("What mattered").
const MAX_IN_FLIGHT: usize = 2;
const MAX_CMDS: usize = 512;
/// Keeps one entry's size reasonable for replication; a single command may exceed it alone.
const MAX_BYTES: usize = 4 << 20;

pub type WriteResult = Result<(u64, Vec<CmdResult>), Error>;

pub struct Pending {
    pub cmds: Vec<Command>,
    pub done: oneshot::Sender<WriteResult>,
}

/// The keys a command touches, as `ns\0key`; `None` for commands that must travel alone
/// (expiry touches unknown keys; token changes are rare and simplest alone).
fn keys_of(cmd: &Command) -> Option<Vec<String>> {
    match cmd {
        Command::Get { ns, key }
        | Command::Set { ns, key, .. }
        | Command::Delete { ns, key, .. }
        | Command::Increment { ns, key, .. } => Some(vec![format!("{ns}\0{key}")]),
        Command::Batch(ops) => {
            let mut all = Vec::with_capacity(ops.len());
            for op in ops {
                all.extend(keys_of(op)?);
            }
            Some(all)
        }
        Command::Expire | Command::CreateToken { .. } | Command::RevokeToken { .. } | Command::RetireNode { .. } => {
            None
        }
    }
}

fn size_of(cmd: &Command) -> usize {
    match cmd {
        Command::Set { key, value, .. } => key.len() + value.len(),
        Command::Get { key, .. } | Command::Delete { key, .. } | Command::Increment { key, .. } => key.len(),
        Command::Batch(ops) => ops.iter().map(size_of).sum(),
        Command::Expire | Command::CreateToken { .. } | Command::RevokeToken { .. } | Command::RetireNode { .. } => 64,
    }
}

/// The keys of a pending write, or `None` if it must travel alone.
fn pending_keys(p: &Pending) -> Option<HashSet<String>> {
    let mut keys = HashSet::new();
    for c in &p.cmds {
        keys.extend(keys_of(c)?);
    }
    Some(keys)
}

/// Whether `p` can join a batch already holding `keys` (and `bytes`, `n` commands).
fn fits(p: &Pending, keys: &HashSet<String>, bytes: usize, n: usize) -> bool {
    if n + p.cmds.len() > MAX_CMDS || bytes + p.cmds.iter().map(size_of).sum::<usize>() > MAX_BYTES {
        return false;
    }
    pending_keys(p).is_some_and(|mine| mine.is_disjoint(keys))
}

/// Runs until every sender is dropped. `propose` submits one entry's commands and returns the
/// log index and the results in order.
pub async fn run<F, Fut>(mut rx: mpsc::Receiver<Pending>, propose: F)
where
    F: Fn(Vec<Command>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = WriteResult> + Send + 'static,
{
    let propose = Arc::new(propose);
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
        if let Some(mut keys) = pending_keys(&batch[0]) {
            let mut bytes: usize = batch[0].cmds.iter().map(size_of).sum();
            let mut n = batch[0].cmds.len();
            while let Ok(p) = rx.try_recv() {
                if !fits(&p, &keys, bytes, n) {
                    carry = Some(p);
                    break;
                }
                keys.extend(pending_keys(&p).unwrap_or_default());
                bytes += p.cmds.iter().map(size_of).sum::<usize>();
                n += p.cmds.len();
                batch.push(p);
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

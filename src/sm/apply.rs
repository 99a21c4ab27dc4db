//! Deterministic application of committed entries. This is the only code that mutates state.
//! It never reads a clock or randomness: time comes from the leader's stamp on each proposal,
//! folded into the replicated logical clock. A run of entries is applied through an overlay
//! whose changes, `last_applied` included, are then written key by key under the live lock
//! ([`Writes::write_to`]): readers never see half of an apply, and after a crash the state
//! machine finishes the last apply from its redo record, or is rebuilt from its snapshot and the
//! WAL (`sm/mod.rs`, `sm/close.rs`), so an entry is never applied twice or half-applied.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{EntryPayload, StoredMembership};

use super::history::{self, Change, Op, Retention};
use super::keys::{self, StoredItem, TokenRecord};
use super::redo::Writes;
use crate::codec;
use crate::model::command::{
    CmdResult, Command, Condition, Item, Limits, Number, Proposal, ProposalResult, Refusal, TokenExpiry,
};
use crate::model::private;
use crate::model::types::{Entry, LogId};

/// Storage failure while applying: fatal for the node (openraft stops it).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

/// Pending writes over the tree; reads see them first.
pub struct Overlay<'a> {
    tree: &'a sled::Tree,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// While an atomic batch runs: each touched key with its previous overlay state, so the
    /// batch can be undone.
    journal: Option<Vec<Undo>>,
}

/// A key and what the overlay held for it before (`None`: nothing, fall through to sled).
type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

impl<'a> Overlay<'a> {
    pub fn new(tree: &'a sled::Tree) -> Self {
        Overlay { tree, writes: BTreeMap::new(), journal: None }
    }

    fn begin(&mut self) {
        self.journal = Some(Vec::new());
    }

    fn commit(&mut self) {
        self.journal = None;
    }

    fn rollback(&mut self) {
        for (k, prev) in self.journal.take().unwrap_or_default().into_iter().rev() {
            match prev {
                Some(p) => self.writes.insert(k, p),
                None => self.writes.remove(&k),
            };
        }
    }

    fn record(&mut self, k: &[u8]) {
        if let Some(j) = &mut self.journal {
            j.push((k.to_vec(), self.writes.get(k).cloned()));
        }
    }

    pub(super) fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        match self.writes.get(k) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(k)?.map(|v| v.to_vec())),
        }
    }

    pub(super) fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.record(&k);
        self.writes.insert(k, Some(v));
    }

    pub(super) fn del(&mut self, k: Vec<u8>) {
        self.record(&k);
        self.writes.insert(k, None);
    }

    /// Keys in `[lo, hi)` as the overlay sees them, in order.
    pub(super) fn keys_in(&self, lo: &[u8], hi: &[u8]) -> Result<BTreeSet<Vec<u8>>, ApplyError> {
        let mut out = BTreeSet::new();
        for kv in self.tree.range(lo..hi) {
            out.insert(kv?.0.to_vec());
        }
        for (k, v) in self.writes.range(lo.to_vec()..hi.to_vec()) {
            match v {
                Some(_) => out.insert(k.clone()),
                None => out.remove(k),
            };
        }
        Ok(out)
    }

    fn into_writes(self) -> Writes {
        Writes::new(self.writes)
    }
}

/// Applies entries in order; call [`Applier::finish`] to get the batch to commit.
pub struct Applier<'a> {
    pub(super) ov: Overlay<'a>,
    pub clock: u64,
    pub(super) limits: Limits,
    pub last_applied: Option<LogId>,
    /// The current entry's changes to client keys, for its history record.
    changes: Vec<Change>,
    /// Every entry of this run that changed a client key, with its changes, for watchers.
    pub published: Vec<(u64, std::sync::Arc<Vec<Change>>)>,
    history: history::Meta,
    retention: Retention,
}

impl<'a> Applier<'a> {
    pub fn new(tree: &'a sled::Tree) -> Result<Self, ApplyError> {
        let ov = Overlay::new(tree);
        let clock = match ov.get(keys::META_CLOCK)? {
            Some(b) => codec::decode(&b)?,
            None => 0,
        };
        let history = match ov.get(keys::META_HISTORY)? {
            Some(b) => history::decode_meta(&b)?,
            None => history::Meta::default(),
        };
        Ok(Applier {
            ov,
            clock,
            limits: Limits::default(),
            last_applied: None,
            changes: Vec::new(),
            published: Vec::new(),
            history,
            retention: Retention::default(),
        })
    }

    /// How much watch history to keep (the default otherwise).
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    pub fn apply_entry(&mut self, entry: &Entry) -> Result<ProposalResult, ApplyError> {
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => Ok(ProposalResult::default()),
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                self.ov.put(keys::META_MEMBERSHIP.to_vec(), codec::encode(&stored)?);
                Ok(ProposalResult::default())
            }
            EntryPayload::Normal(p) => {
                let r = self.apply_proposal(entry.log_id, p)?;
                self.record_history(entry.log_id.index)?;
                Ok(r)
            }
        }
    }

    /// Writes the entry's history record, if it changed a client key.
    fn record_history(&mut self, index: u64) -> Result<(), ApplyError> {
        if self.changes.is_empty() {
            return Ok(());
        }
        let changes = std::mem::take(&mut self.changes);
        let rec = history::Record { at_ms: self.clock, changes };
        let bytes = history::encode(&rec)?;
        self.history.bytes += bytes.len() as u64;
        self.ov.put(history::key(index), bytes);
        self.published.push((index, std::sync::Arc::new(rec.changes)));
        Ok(())
    }

    /// Notes a change for the history; dialects' private keys are never watched, so not kept.
    pub(super) fn note(&mut self, op: Op, ns: &str, key: &str, version: u64, item: Option<&StoredItem>) {
        if private::is_private(ns) || private::is_private(key) {
            return;
        }
        self.changes.push(Change {
            op,
            ns: ns.to_string(),
            key: key.to_string(),
            version,
            value: item.map(|i| i.value.clone()),
            expires_at: item.and_then(|i| i.expires_at),
        });
    }

    /// Drops the oldest history records that retention no longer keeps, at most
    /// [`history::PRUNE_PER_RUN`], and raises the floor past them.
    fn prune_history(&mut self) -> Result<(), ApplyError> {
        let applied = self.last_applied.map_or(0, |l| l.index);
        let tree = self.ov.tree;
        let (lo, hi) = history::range_after(0);
        for (dropped, kv) in tree.range(lo..hi).enumerate() {
            let (k, v) = kv?;
            let Some(index) = history::parse_key(&k) else { break };
            if self.ov.writes.contains_key(k.as_ref()) {
                break;
            }
            let at_ms = history::at_ms(&v)?;
            if dropped >= history::PRUNE_PER_RUN
                || !history::drops(&self.retention, index, at_ms, &self.history, applied, self.clock)
            {
                break;
            }
            self.ov.del(k.to_vec());
            self.history.bytes = self.history.bytes.saturating_sub(v.len() as u64);
            self.history.compacted = self.history.compacted.max(index);
        }
        self.history.compacted = self.history.compacted.max(history::entry_floor(&self.retention, applied));
        Ok(())
    }

    fn apply_proposal(&mut self, log_id: LogId, p: &Proposal) -> Result<ProposalResult, ApplyError> {
        let index = log_id.index;
        self.clock = self.clock.max(p.now_ms);
        self.limits = p.limits;
        self.renew_leases_for_term(log_id.leader_id.term)?;
        let mut results = Vec::with_capacity(p.cmds.len());
        for cmd in p.cmds.iter() {
            results.push(self.apply_cmd(index, cmd)?);
        }
        Ok(ProposalResult { results })
    }

    /// The stored item, physically present or not-yet-deleted-but-expired.
    pub(super) fn stored(&self, ns: &str, key: &str) -> Result<Option<StoredItem>, ApplyError> {
        match self.ov.get(&keys::data_key(ns, key))? {
            Some(b) => Ok(Some(codec::decode(&b)?)),
            None => Ok(None),
        }
    }

    fn count(&self, ns: &str) -> Result<u64, ApplyError> {
        Ok(self.ov.get(&keys::count_key(ns))?.map(|v| keys::decode_count(&v)).unwrap_or(0))
    }

    pub(super) fn add_count(&mut self, ns: &str, up: bool) -> Result<(), ApplyError> {
        let n = self.count(ns)?;
        let n = if up { n + 1 } else { n.saturating_sub(1) };
        if n == 0 {
            self.ov.del(keys::count_key(ns));
        } else {
            self.ov.put(keys::count_key(ns), keys::encode_count(n));
        }
        Ok(())
    }

    /// Whether creating one more key in `ns` would exceed the namespace quota. A private
    /// namespace has none: it holds one record per record of a client namespace (a KVdb
    /// bucket's lookup beside its policy record), which that namespace's quota already bounds.
    pub(super) fn over_quota(&self, ns: &str) -> Result<bool, ApplyError> {
        let max = self.limits.max_keys_per_namespace;
        Ok(max > 0 && !private::is_private(ns) && self.count(ns)? >= max)
    }

    fn write(
        &mut self,
        op: Op,
        ns: &str,
        key: &str,
        old: Option<&StoredItem>,
        new: &StoredItem,
    ) -> Result<(), ApplyError> {
        self.note(op, ns, key, new.version, Some(new));
        match old {
            Some(o) => {
                if let Some(at) = o.expires_at {
                    self.ov.del(keys::expiry_key(at, ns, key));
                }
            }
            None => self.add_count(ns, true)?,
        }
        if let Some(at) = new.expires_at {
            self.ov.put(keys::expiry_key(at, ns, key), Vec::new());
        }
        self.ov.put(keys::data_key(ns, key), codec::encode(new)?);
        Ok(())
    }

    fn remove(&mut self, index: u64, ns: &str, key: &str, old: &StoredItem) -> Result<(), ApplyError> {
        self.remove_as(Op::Delete, index, ns, key, old)
    }

    /// Deletes a key, noting it for watchers as `op` (a delete, or its lease's expiry).
    pub(super) fn remove_as(
        &mut self,
        op: Op,
        index: u64,
        ns: &str,
        key: &str,
        old: &StoredItem,
    ) -> Result<(), ApplyError> {
        self.note(op, ns, key, index, None);
        if let Some(at) = old.expires_at {
            self.ov.del(keys::expiry_key(at, ns, key));
        }
        self.ov.del(keys::data_key(ns, key));
        self.detach(ns, key)?;
        self.add_count(ns, false)
    }

    fn apply_cmd(&mut self, index: u64, cmd: &Command) -> Result<CmdResult, ApplyError> {
        match cmd {
            Command::Get { ns, key } => {
                let old = self.stored(ns, key)?;
                Ok(match old.filter(|o| o.is_live(self.clock)) {
                    Some(o) => CmdResult::Item(item(key, o)),
                    None => CmdResult::Absent { key: key.clone() },
                })
            }
            Command::Set { ns, key, value, ttl_ms, cond } => self.set(index, ns, key, value, *ttl_ms, cond, None),
            Command::SetLeased { ns, key, value, ttl_ms, cond, lease } => {
                self.set(index, ns, key, value, *ttl_ms, cond, Some(*lease))
            }
            Command::Delete { ns, key, cond } => {
                let old = self.stored(ns, key)?;
                let Some(live) = old.as_ref().filter(|o| o.is_live(self.clock)) else {
                    return Ok(CmdResult::Refused(Refusal::NotFound));
                };
                if let Some(refusal) = self.refusal(ns, cond, Some(live))? {
                    return Ok(CmdResult::Refused(refusal));
                }
                let live = live.clone();
                self.remove(index, ns, key, &live)?;
                Ok(CmdResult::Deleted { key: key.clone() })
            }
            Command::Increment { ns, key, delta, ttl_ms } => self.increment(index, ns, key, *delta, *ttl_ms, None),
            Command::IncrementFenced { ns, key, delta, ttl_ms, cond } => {
                self.increment(index, ns, key, *delta, *ttl_ms, Some(cond))
            }
            Command::Expire => {
                let count = self.expire_keys(index)? + self.expire_leases(index)?;
                self.expire_tokens()?;
                self.expire_lock_delays()?;
                Ok(CmdResult::Expired { count })
            }
            Command::LeaseGrant { ns, ttl_ms } => self.grant_lease(ns, *ttl_ms),
            Command::LeaseKeepAlive { ns, id } => self.keep_lease_alive(ns, *id),
            Command::LeaseRevoke { ns, id } => self.revoke_lease(index, ns, *id),
            Command::Enqueue { ns, queue, name, lease, value, lock_delay_ms } => {
                self.enqueue(index, ns, *queue, name, *lease, value, *lock_delay_ms)
            }
            Command::Dequeue { ns, queue, name, token } => self.dequeue(ns, *queue, name, *token),
            Command::Proclaim { ns, name, token, value } => self.proclaim(ns, name, *token, value),
            Command::Batch(ops) => self.apply_batch(index, ops),
            Command::CreateToken { id, namespace, hash, perms } => self.create_token(id, namespace, hash, *perms, None),
            Command::CreateTokenExpiring { id, namespace, hash, perms, expires } => {
                self.create_token(id, namespace, hash, *perms, Some(*expires))
            }
            Command::RetireNode { id } => {
                self.ov.put(keys::retired_key(*id), Vec::new());
                Ok(CmdResult::NodeRetired { id: *id })
            }
            Command::RevokeToken { id } => {
                let existed = self.remove_token(id)?;
                Ok(CmdResult::TokenRevoked { id: id.clone(), existed })
            }
        }
    }

    /// A set, attached to `lease` when given (which must be live in `ns`), detached otherwise.
    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        index: u64,
        ns: &str,
        key: &str,
        value: &str,
        ttl_ms: Option<u64>,
        cond: &Condition,
        lease: Option<u64>,
    ) -> Result<CmdResult, ApplyError> {
        let old = self.stored(ns, key)?;
        let live = old.as_ref().filter(|o| o.is_live(self.clock));
        if let Some(refusal) = self.refusal(ns, cond, live)? {
            return Ok(CmdResult::Refused(refusal));
        }
        if let Some(id) = lease {
            if self.live_lease(ns, id)?.is_none() {
                return Ok(CmdResult::Refused(Refusal::LeaseNotFound));
            }
        }
        if old.is_none() && self.over_quota(ns)? {
            return Ok(CmdResult::Refused(Refusal::QuotaExceeded));
        }
        let new = StoredItem {
            value: value.to_string(),
            version: index,
            expires_at: ttl_ms.map(|t| self.clock.saturating_add(t)),
        };
        self.write(Op::Set, ns, key, old.as_ref(), &new)?;
        match lease {
            Some(id) => self.attach(ns, key, id)?,
            None => self.detach(ns, key)?,
        }
        Ok(CmdResult::Item(item(key, new)))
    }

    /// An increment; with `cond` (a fence), only while it holds.
    fn increment(
        &mut self,
        index: u64,
        ns: &str,
        key: &str,
        delta: Number,
        ttl_ms: Option<u64>,
        cond: Option<&Condition>,
    ) -> Result<CmdResult, ApplyError> {
        let old = self.stored(ns, key)?;
        let live = old.as_ref().filter(|o| o.is_live(self.clock));
        if let Some(cond) = cond {
            if let Some(refusal) = self.refusal(ns, cond, live)? {
                return Ok(CmdResult::Refused(refusal));
            }
        }
        let (current, expires_at) = match live {
            Some(o) => match parse_number(&o.value) {
                Ok(n) => (n, o.expires_at),
                Err(refusal) => return Ok(CmdResult::Refused(refusal)),
            },
            None => (Number::Int(0), ttl_ms.map(|t| self.clock.saturating_add(t))),
        };
        let Some(value) = add(current, delta) else {
            return Ok(CmdResult::Refused(Refusal::Overflow));
        };
        if old.is_none() && self.over_quota(ns)? {
            return Ok(CmdResult::Refused(Refusal::QuotaExceeded));
        }
        let new = StoredItem { value, version: index, expires_at };
        self.write(Op::Increment, ns, key, old.as_ref(), &new)?;
        Ok(CmdResult::Item(item(key, new)))
    }

    /// Why `cond` refuses a write of a key of `ns` whose live item is `live`, if it does. A fence
    /// is judged against the lock's queue in this same entry.
    fn refusal(&self, ns: &str, cond: &Condition, live: Option<&StoredItem>) -> Result<Option<Refusal>, ApplyError> {
        match cond {
            Condition::IfFence { lock, token } => Ok((!self.fence_holds(ns, lock, *token)?).then_some(Refusal::Fenced)),
            cond => Ok(check(cond, live)),
        }
    }

    /// Deletes every key due by the clock, in index order; returns how many.
    fn expire_keys(&mut self, index: u64) -> Result<u64, ApplyError> {
        let due = self.ov.keys_in(&[keys::EXPIRY], &keys::expiry_upper_bound(keys::EXPIRY, self.clock))?;
        let mut count = 0;
        for xk in due {
            self.ov.del(xk.clone());
            let Some((at, ns, key)) = keys::parse_expiry_key(&xk) else {
                continue;
            };
            if let Some(old) = self.stored(ns, key)? {
                if old.expires_at == Some(at) {
                    self.note(Op::Expire, ns, key, index, None);
                    self.ov.del(keys::data_key(ns, key));
                    self.detach(ns, key)?;
                    self.add_count(ns, false)?;
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// Deletes every token due by the clock. Readers already treat them as absent; deleting
    /// them keeps expired tokens from piling up in the state and in listings, and ends the
    /// leader's ticker's interest in them (it proposes `Expire` while anything is due).
    fn expire_tokens(&mut self) -> Result<(), ApplyError> {
        let hi = keys::expiry_upper_bound(keys::TOKEN_EXPIRY_INDEX, self.clock);
        for k in self.ov.keys_in(&[keys::TOKEN_EXPIRY_INDEX], &hi)? {
            self.ov.del(k.clone());
            if let Some(id) = keys::parse_token_index_key(&k) {
                self.remove_token(id)?;
            }
        }
        Ok(())
    }

    /// Stores a token created at the clock; its expiry, if any, goes beside the record (see
    /// `keys.rs`). An expiry already past is stored as it is: such a token is simply never
    /// live (the API refuses past expiries, so only a clock that moved on since can do this).
    fn create_token(
        &mut self,
        id: &str,
        namespace: &str,
        hash: &[u8],
        perms: u8,
        expires: Option<TokenExpiry>,
    ) -> Result<CmdResult, ApplyError> {
        if self.ov.get(&keys::token_key(id))?.is_some() {
            return Ok(CmdResult::Refused(Refusal::KeyExists));
        }
        let expires_at = expires.map(|e| e.at(self.clock));
        let rec = TokenRecord {
            namespace: namespace.to_string(),
            hash: hash.to_vec(),
            perms,
            created_ms: self.clock,
            expires_at,
        };
        self.ov.put(keys::token_key(id), codec::encode(&rec)?);
        if let Some(at) = expires_at {
            self.ov.put(keys::token_expiry_key(id), codec::encode(&at)?);
            self.ov.put(keys::token_index_key(at, id), Vec::new());
        }
        Ok(CmdResult::TokenCreated { id: id.to_string(), expires_at })
    }

    /// Deletes a token and its expiry entries. Returns whether it was live: an expired token
    /// was already gone to every reader. The record itself is not decoded, as before expiry.
    fn remove_token(&mut self, id: &str) -> Result<bool, ApplyError> {
        let k = keys::token_key(id);
        let existed = self.ov.get(&k)?.is_some();
        self.ov.del(k);
        let expires_at = keys::read_token_expiry(id, |k| self.ov.get(k))?;
        if let Some(at) = expires_at {
            self.ov.del(keys::token_expiry_key(id));
            self.ov.del(keys::token_index_key(at, id));
        }
        Ok(existed && keys::live_at(expires_at, self.clock))
    }

    /// All-or-nothing: ops see each other's effects; the first refusal undoes the batch.
    /// Deleting an absent key is reported but does not abort. Only key commands may nest.
    fn apply_batch(&mut self, index: u64, ops: &[Command]) -> Result<CmdResult, ApplyError> {
        self.ov.begin();
        let noted = self.changes.len();
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let nested = matches!(
                op,
                Command::Get { .. }
                    | Command::Set { .. }
                    | Command::SetLeased { .. }
                    | Command::Delete { .. }
                    | Command::Increment { .. }
                    | Command::IncrementFenced { .. }
            );
            let r = if nested { self.apply_cmd(index, op) } else { Ok(CmdResult::Refused(Refusal::NotFound)) };
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    self.ov.rollback();
                    self.changes.truncate(noted);
                    return Err(e);
                }
            };
            match r {
                CmdResult::Refused(Refusal::NotFound) if matches!(op, Command::Delete { .. }) => {
                    let key = match op {
                        Command::Delete { key, .. } => key.clone(),
                        _ => String::new(),
                    };
                    results.push(CmdResult::Absent { key })
                }
                CmdResult::Refused(refusal) => {
                    self.ov.rollback();
                    self.changes.truncate(noted);
                    return Ok(CmdResult::BatchRefused { index: i as u32, refusal });
                }
                r => results.push(r),
            }
        }
        self.ov.commit();
        Ok(CmdResult::Batch(results))
    }

    /// The batch holding every change plus the new clock and `last_applied`.
    pub fn finish(mut self) -> Result<Writes, ApplyError> {
        self.prune_history()?;
        self.ov.put(keys::META_HISTORY.to_vec(), history::encode_meta(&self.history)?);
        self.ov.put(keys::META_CLOCK.to_vec(), codec::encode(&self.clock)?);
        if self.last_applied.is_some() {
            self.ov.put(keys::META_LAST_APPLIED.to_vec(), codec::encode(&self.last_applied)?);
        }
        Ok(self.ov.into_writes())
    }
}

fn item(key: &str, s: StoredItem) -> Item {
    Item { key: key.to_string(), value: s.value, version: s.version, expires_at: s.expires_at }
}

/// Evaluates a write condition against the live item; `None` means it holds.
fn check(cond: &Condition, live: Option<&StoredItem>) -> Option<Refusal> {
    match (cond, live) {
        (Condition::None, _) => None,
        (Condition::IfAbsent, None) => None,
        (Condition::IfAbsent, Some(_)) => Some(Refusal::KeyExists),
        (Condition::IfVersion(v), Some(o)) if o.version == *v => None,
        (Condition::IfVersion(_), live) => Some(Refusal::VersionMismatch { current: live.map(|o| o.version) }),
        (Condition::IfValue(expected), Some(o)) if json_eq(expected, &o.value) => None,
        (Condition::IfValue(_), _) => Some(Refusal::ValueMismatch),
        // Judged against the lock's queue by `Applier::refusal`, which never gets here with one.
        (Condition::IfFence { .. }, _) => Some(Refusal::Fenced),
    }
}

fn json_eq(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A stored value as an increment's operand. An integer written without a fraction or
/// exponent is exact: inside the i64 range it is added exactly, outside it the increment is
/// refused (`OutOfRange`) rather than silently turned into a float. Anything else numeric is
/// a float, as before.
fn parse_number(text: &str) -> Result<Number, Refusal> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Number::Int(i)),
            None if crate::model::command::is_integer_literal(&n.to_string()) => Err(Refusal::OutOfRange),
            None => n.as_f64().map(Number::Float).ok_or(Refusal::NotANumber),
        },
        _ => Err(Refusal::NotANumber),
    }
}

/// Checked i64 arithmetic when both sides are integers, f64 otherwise; `None` on overflow or a
/// non-finite result. Returns JSON text.
pub fn add(a: Number, b: Number) -> Option<String> {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => x.checked_add(y).map(|v| v.to_string()),
        (x, y) => {
            let f = as_f64(x) + as_f64(y);
            serde_json::Number::from_f64(f).filter(|_| f.is_finite()).map(|n| n.to_string())
        }
    }
}

fn as_f64(n: Number) -> f64 {
    match n {
        Number::Int(i) => i as f64,
        Number::Float(f) => f,
    }
}

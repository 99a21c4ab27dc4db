//! Locks and elections in apply. Both are a queue of waiters per name, in order of arrival, each
//! held by a lease: the first waiter holds the lock (leads the election) while its lease is
//! live. A waiter's fencing token is the log index of the entry that queued it, so tokens only
//! grow. Whether a token holds is judged here, in the entry of the write it guards, against the
//! entry's clock: a holder whose lease ran out is refused even before the expiry sweep removes
//! it, and its successor holds only from that sweep on, so two holders never overlap. A lock
//! taken with a lock delay stays unheld for that long after its holder's lease ended (revoked
//! or expired), as Consul's sessions do: a holder that lost its lease gets time to notice
//! before anyone else acts.

use super::apply::{Applier, ApplyError};
use super::keys::{self, Waiter};
use crate::codec;
use crate::model::command::{CmdResult, Queue, Refusal};

impl Applier<'_> {
    /// The queue's first waiter, with its token, if its lease is live at the entry's clock.
    pub(super) fn holder(&self, ns: &str, queue: Queue, name: &str) -> Result<Option<(u64, Waiter)>, ApplyError> {
        if queue == Queue::Lock && self.lock_delayed_until(ns, name)?.is_some_and(|until| until > self.clock) {
            return Ok(None);
        }
        let (lo, hi) = keys::queue_range(queue.tag(), ns, name);
        let Some(first) = self.ov.keys_in(&lo, &hi)?.into_iter().next() else {
            return Ok(None);
        };
        let Some((_, _, _, token)) = keys::parse_waiter_key(&first) else { return Ok(None) };
        let Some(raw) = self.ov.get(&first)? else { return Ok(None) };
        let w: Waiter = codec::decode(&raw)?;
        Ok(self.live_lease(ns, w.lease)?.map(|_| (token, w)))
    }

    /// Whether `token` holds lock `lock` of `ns` now.
    pub(super) fn fence_holds(&self, ns: &str, lock: &str, token: u64) -> Result<bool, ApplyError> {
        Ok(self.holder(ns, Queue::Lock, lock)?.is_some_and(|(t, _)| t == token))
    }

    fn lock_delayed_until(&self, ns: &str, name: &str) -> Result<Option<u64>, ApplyError> {
        Ok(self
            .ov
            .get(&keys::lock_delay_key(ns, name))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes))
    }

    /// Called as waiter `key`'s lease ends: if it was first in a lock's queue and asked for a
    /// lock delay, the lock stays unheld until the delay has passed.
    pub(super) fn lease_ended_for(&mut self, key: &[u8], w: &Waiter) -> Result<(), ApplyError> {
        let Some((kind, ns, name, _)) = keys::parse_waiter_key(key) else { return Ok(()) };
        if kind != Queue::Lock.tag() || w.lock_delay_ms == 0 {
            return Ok(());
        }
        let (ns, name) = (ns.to_string(), name.to_string());
        let (lo, hi) = keys::queue_range(kind, &ns, &name);
        if self.ov.keys_in(&lo, &hi)?.into_iter().next().as_deref() != Some(key) {
            return Ok(());
        }
        let until = self.clock.saturating_add(w.lock_delay_ms);
        if let Some(old) = self.lock_delayed_until(&ns, &name)? {
            if old >= until {
                return Ok(());
            }
            self.ov.del(keys::lock_delay_index_key(old, &ns, &name));
        }
        self.ov.put(keys::lock_delay_key(&ns, &name), until.to_be_bytes().to_vec());
        self.ov.put(keys::lock_delay_index_key(until, &ns, &name), Vec::new());
        Ok(())
    }

    /// Ends every lock delay the clock has passed (the leader's ticker proposes the `Expire`
    /// that does it, which is also what moves the clock past the delay on an idle cluster).
    pub(super) fn expire_lock_delays(&mut self) -> Result<(), ApplyError> {
        let hi = keys::expiry_upper_bound(keys::LOCK_DELAY_INDEX, self.clock);
        for k in self.ov.keys_in(&[keys::LOCK_DELAY_INDEX], &hi)? {
            if let Some((_, ns, name)) = keys::parse_lock_delay_index_key(&k) {
                self.ov.del(keys::lock_delay_key(ns, name));
            }
            self.ov.del(k);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn enqueue(
        &mut self,
        index: u64,
        ns: &str,
        queue: Queue,
        name: &str,
        lease: u64,
        value: &str,
        lock_delay_ms: u64,
    ) -> Result<CmdResult, ApplyError> {
        if self.live_lease(ns, lease)?.is_none() {
            return Ok(CmdResult::Refused(Refusal::LeaseNotFound));
        }
        let (lo, hi) = keys::queue_range(queue.tag(), ns, name);
        for k in self.ov.keys_in(&lo, &hi)? {
            let Some(raw) = self.ov.get(&k)? else { continue };
            let w: Waiter = codec::decode(&raw)?;
            if w.lease == lease {
                let Some((_, _, _, token)) = keys::parse_waiter_key(&k) else { continue };
                let holder = self.holder(ns, queue, name)?.map(|(t, _)| t);
                return Ok(CmdResult::Queued { token, holder });
            }
        }
        // A waiter takes a place in the namespace's key quota, so queues cannot grow unbounded.
        if self.over_quota(ns)? {
            return Ok(CmdResult::Refused(Refusal::QuotaExceeded));
        }
        let key = keys::waiter_key(queue.tag(), ns, name, index);
        self.ov.put(key.clone(), codec::encode(&Waiter { lease, value: value.to_string(), lock_delay_ms })?);
        self.ov.put(keys::attached_key(lease, &key), Vec::new());
        self.add_count(ns, true)?;
        let holder = self.holder(ns, queue, name)?.map(|(t, _)| t);
        Ok(CmdResult::Queued { token: index, holder })
    }

    pub(super) fn dequeue(&mut self, ns: &str, queue: Queue, name: &str, token: u64) -> Result<CmdResult, ApplyError> {
        let key = keys::waiter_key(queue.tag(), ns, name, token);
        let Some(raw) = self.ov.get(&key)? else {
            return Ok(CmdResult::Refused(Refusal::NotFound));
        };
        let w: Waiter = codec::decode(&raw)?;
        self.ov.del(keys::attached_key(w.lease, &key));
        self.remove_waiter(ns, key)?;
        Ok(CmdResult::Dequeued { token })
    }

    /// Deletes a waiter record (its lease's attachment entry is the caller's).
    pub(super) fn remove_waiter(&mut self, ns: &str, key: Vec<u8>) -> Result<(), ApplyError> {
        self.ov.del(key);
        self.add_count(ns, false)
    }

    pub(super) fn proclaim(&mut self, ns: &str, name: &str, token: u64, value: &str) -> Result<CmdResult, ApplyError> {
        match self.holder(ns, Queue::Election, name)? {
            Some((t, mut w)) if t == token => {
                w.value = value.to_string();
                self.ov.put(keys::waiter_key(Queue::Election.tag(), ns, name, token), codec::encode(&w)?);
                Ok(CmdResult::Proclaimed { token })
            }
            _ => Ok(CmdResult::Refused(Refusal::Fenced)),
        }
    }
}

//! Leases in apply: grant, keepalive, revoke, expiry, the keys attached to them, and the
//! renewal every new leader's first entry gives them. Deterministic like the rest of apply: a
//! lease's expiry is in the replicated logical clock, stamped by the leader that proposed the
//! grant or keepalive, so every replica expires the same lease at the same log index.

use super::apply::{Applier, ApplyError};
use super::history::Op;
use super::keys::{self, LeaseRecord};
use crate::codec;
use crate::model::command::{CmdResult, Lease, Refusal};

impl Applier<'_> {
    fn lease_record(&self, id: u64) -> Result<Option<LeaseRecord>, ApplyError> {
        match self.ov.get(&keys::lease_key(id))? {
            Some(b) => Ok(Some(codec::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Lease `id` when it is live and belongs to `ns`: another namespace's lease is as good as
    /// absent to a caller, so ids cannot be probed across namespaces.
    pub(super) fn live_lease(&self, ns: &str, id: u64) -> Result<Option<LeaseRecord>, ApplyError> {
        Ok(self.lease_record(id)?.filter(|l| l.namespace == ns && l.is_live(self.clock)))
    }

    fn store_lease(&mut self, id: u64, old_at: Option<u64>, rec: &LeaseRecord) -> Result<(), ApplyError> {
        if let Some(at) = old_at {
            self.ov.del(keys::lease_index_key(at, id));
        }
        self.ov.put(keys::lease_index_key(rec.expires_at, id), Vec::new());
        self.ov.put(keys::lease_key(id), codec::encode(rec)?);
        Ok(())
    }

    fn lease_count(&self, ns: &str) -> Result<u64, ApplyError> {
        Ok(self.ov.get(&keys::lease_count_key(ns))?.map(|v| keys::decode_count(&v)).unwrap_or(0))
    }

    fn set_lease_count(&mut self, ns: &str, n: u64) {
        if n == 0 {
            self.ov.del(keys::lease_count_key(ns));
        } else {
            self.ov.put(keys::lease_count_key(ns), keys::encode_count(n));
        }
    }

    /// A new lease. The namespace's key quota also bounds how many leases it may hold (counted
    /// apart from its keys), so a client cannot fill the state with leases either.
    pub(super) fn grant_lease(&mut self, ns: &str, ttl_ms: u64) -> Result<CmdResult, ApplyError> {
        let max = self.limits.max_keys_per_namespace;
        let held = self.lease_count(ns)?;
        if max > 0 && held >= max {
            return Ok(CmdResult::Refused(Refusal::QuotaExceeded));
        }
        let id = match self.ov.get(keys::META_NEXT_LEASE)? {
            Some(b) => codec::decode(&b)?,
            None => 1u64,
        };
        self.ov.put(keys::META_NEXT_LEASE.to_vec(), codec::encode(&(id + 1))?);
        let rec = LeaseRecord { namespace: ns.to_string(), ttl_ms, expires_at: self.clock.saturating_add(ttl_ms) };
        self.store_lease(id, None, &rec)?;
        self.set_lease_count(ns, held + 1);
        Ok(CmdResult::Lease(Lease { id, ttl_ms, expires_at: rec.expires_at }))
    }

    pub(super) fn keep_lease_alive(&mut self, ns: &str, id: u64) -> Result<CmdResult, ApplyError> {
        let Some(mut rec) = self.live_lease(ns, id)? else {
            return Ok(CmdResult::Refused(Refusal::LeaseNotFound));
        };
        let old_at = rec.expires_at;
        rec.expires_at = self.clock.saturating_add(rec.ttl_ms);
        self.store_lease(id, Some(old_at), &rec)?;
        Ok(CmdResult::Lease(Lease { id, ttl_ms: rec.ttl_ms, expires_at: rec.expires_at }))
    }

    /// Revokes a live lease of `ns`. One that expired but was not swept yet is already gone
    /// to every reader, so it is not found; the next `Expire` removes it.
    pub(super) fn revoke_lease(&mut self, index: u64, ns: &str, id: u64) -> Result<CmdResult, ApplyError> {
        let Some(rec) = self.live_lease(ns, id)? else {
            return Ok(CmdResult::Refused(Refusal::LeaseNotFound));
        };
        let keys = self.end_lease(index, id, &rec, Op::Delete)?;
        Ok(CmdResult::LeaseRevoked { id, keys })
    }

    /// Removes lease `id` and every record attached to it, noting each key's removal as `op`
    /// for watchers. Returns how many keys went.
    fn end_lease(&mut self, index: u64, id: u64, rec: &LeaseRecord, op: Op) -> Result<u64, ApplyError> {
        let (lo, hi) = keys::attached_range(id);
        let mut count = 0;
        for a in self.ov.keys_in(&lo, &hi)? {
            self.ov.del(a.clone());
            let Some(target) = keys::attached_target(&a) else { continue };
            if let Some((_, ns, _, _)) = keys::parse_waiter_key(target) {
                // A lock's waiter or an election's candidate: its place goes with its lease.
                let ns = ns.to_string();
                if let Some(raw) = self.ov.get(target)? {
                    let w: keys::Waiter = codec::decode(&raw)?;
                    self.lease_ended_for(target, &w)?;
                }
                self.remove_waiter(&ns, target.to_vec())?;
                continue;
            }
            let Some((ns, key)) = keys::parse_data_key(target) else {
                continue;
            };
            let (ns, key) = (ns.to_string(), key.to_string());
            self.ov.del(keys::key_lease_key(&ns, &key));
            if let Some(item) = self.stored(&ns, &key)? {
                self.remove_as(op, index, &ns, &key, &item)?;
                count += 1;
            }
        }
        self.ov.del(keys::lease_index_key(rec.expires_at, id));
        self.ov.del(keys::lease_key(id));
        let held = self.lease_count(&rec.namespace)?;
        self.set_lease_count(&rec.namespace, held.saturating_sub(1));
        Ok(count)
    }

    /// Ends every lease due by the clock, with their keys, in this entry.
    pub(super) fn expire_leases(&mut self, index: u64) -> Result<u64, ApplyError> {
        let hi = keys::expiry_upper_bound(keys::LEASE_EXPIRY_INDEX, self.clock);
        let mut count = 0;
        for k in self.ov.keys_in(&[keys::LEASE_EXPIRY_INDEX], &hi)? {
            let Some(id) = keys::parse_lease_index_key(&k) else { continue };
            match self.lease_record(id)? {
                Some(rec) => count += self.end_lease(index, id, &rec, Op::Expire)?,
                None => self.ov.del(k),
            }
        }
        Ok(count)
    }

    /// Attaches `key` of `ns` to lease `id`, leaving any lease it had before.
    pub(super) fn attach(&mut self, ns: &str, key: &str, id: u64) -> Result<(), ApplyError> {
        self.detach(ns, key)?;
        self.ov.put(keys::key_lease_key(ns, key), id.to_be_bytes().to_vec());
        self.ov.put(keys::attached_key(id, &keys::data_key(ns, key)), Vec::new());
        Ok(())
    }

    /// Takes `key` of `ns` off its lease, if it has one: a plain set, a delete or the key's
    /// own expiry ends the attachment, as a put without a lease does in etcd.
    pub(super) fn detach(&mut self, ns: &str, key: &str) -> Result<(), ApplyError> {
        let kl = keys::key_lease_key(ns, key);
        let Some(raw) = self.ov.get(&kl)? else { return Ok(()) };
        self.ov.del(kl);
        if let Ok(id) = <[u8; 8]>::try_from(raw.as_slice()).map(u64::from_be_bytes) {
            self.ov.del(keys::attached_key(id, &keys::data_key(ns, key)));
        }
        Ok(())
    }

    /// At the first entry a new leader stamps, every lease's expiry moves to at least a full
    /// TTL after that entry's clock. Keepalives sent while there was no leader could not be
    /// applied, and a client cannot know where to send them until it learns the new leader; etcd
    /// renews every lease on a leader change for the same reason. The term is replicated with
    /// the leases, so every replica renews at the same entry.
    pub(super) fn renew_leases_for_term(&mut self, term: u64) -> Result<(), ApplyError> {
        let last: u64 = match self.ov.get(keys::META_LEASE_TERM)? {
            Some(b) => codec::decode(&b)?,
            None => 0,
        };
        if term <= last {
            return Ok(());
        }
        self.ov.put(keys::META_LEASE_TERM.to_vec(), codec::encode(&term)?);
        let (lo, hi) = (vec![keys::LEASE], vec![keys::LEASE + 1]);
        for k in self.ov.keys_in(&lo, &hi)? {
            let Some(id) = keys::parse_lease_key(&k) else { continue };
            let Some(mut rec) = self.lease_record(id)? else { continue };
            let renewed = self.clock.saturating_add(rec.ttl_ms);
            if rec.expires_at < renewed {
                let old_at = rec.expires_at;
                rec.expires_at = renewed;
                self.store_lease(id, Some(old_at), &rec)?;
            }
        }
        Ok(())
    }
}

//! The state machine: replicated key/value state in sled, plus snapshot files.
//!
//! sled is flushed lazily (its `flush` is not an fsync anyway): the fsync'd WAL is the
//! durability point, and sled is trusted only after a clean close. Applies write single keys
//! (see `Writes::write_to` for why not sled batches), so after a crash sled may hold part of an
//! apply. Dropping the state machine, which happens after its last apply, writes a `clean`
//! marker behind everything else; opening removes it. Opening without it rebuilds the state
//! from the snapshot file (or from nothing when there is none) and openraft re-applies the rest
//! from the WAL, which is purged only behind a snapshot file. Readers take the `Live` read lock
//! for each call and apply holds its write lock while it writes, so reads see whole applies.
//!
//! - `keys.rs`: sled layout
//! - `apply.rs`: deterministic apply
//! - `cut.rs`: the consistent cut that lets a snapshot build run beside applies
//! - `snapshot.rs`: snapshot file layout
//! - `history.rs`: the watch history written with each apply
//! - `redo.rs`: the order an apply's writes reach sled in, and the redo record
//! - `close.rs`: how sled was last closed, and so how far the next open trusts it

pub mod apply;
mod close;
mod cut;
pub mod history;
pub mod keys;
mod lease;
mod queue;
pub mod redo;
pub mod snapshot;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{OptionalSend, RaftSnapshotBuilder, StorageIOError};

use crate::codec;
pub use crate::config::SmOptions;
use crate::metrics::METRICS;
use crate::model::command::Queue;
use crate::model::command::{Item, ProposalResult};
use crate::model::private;
use crate::model::types::{Entry, LogId, Membership, SnapshotMeta, StorageError, TypeConfig};
use apply::Applier;
use close::Verdict;
use cut::Cut;
use keys::StoredItem;
pub use keys::{LeaseRecord, TokenRecord, Waiter};

fn item(key: &str, s: StoredItem) -> Item {
    Item { key: key.to_string(), value: s.value, version: s.version, expires_at: s.expires_at }
}

const CURRENT: &str = "current.snap";

/// Where a node keeps its durable snapshot, relative to its data dir.
pub fn current_snapshot_path(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots").join(CURRENT)
}
const BUILDING: &str = "build.tmp";
const RECEIVING: &str = "recv.tmp";
const INSTALLING: &str = "install.tmp";

/// What readers must see exactly as apply left it: the logical clock (so they judge expiry as
/// apply does) and the last applied index (for `X-Cairn-Applied-Index`; openraft's metrics
/// catch up only after the client has its answer).
#[derive(Default)]
struct Clock {
    ms: AtomicU64,
    applied: AtomicU64,
}

/// The tree readers use, behind the lock that makes applies atomic to them. Readers hold the
/// read side for one call; apply holds the write side while it writes. An install loads its
/// snapshot into a fresh tree and then swaps it in here, so a reader sees the old state or the
/// new one, never a tree half cleared or half loaded.
struct Live(std::sync::RwLock<sled::Tree>);

impl Live {
    fn new(tree: sled::Tree) -> Live {
        Live(std::sync::RwLock::new(tree))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, sled::Tree> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, sled::Tree> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the state machine tells watchers, in apply order (`SmReader::subscribe`).
#[derive(Debug)]
pub enum Feed {
    /// A run of entries `first..=last` was applied; `changes` holds those that changed a client
    /// key (by index), or is `None` for a run too large to keep in memory: watchers read it
    /// from the history, where it already is.
    Applied { first: u64, last: u64, changes: Option<Vec<(u64, Arc<Vec<history::Change>>)>>, at: std::time::Instant },
    /// A snapshot replaced the state: there is no history at or below `compacted`.
    Reset { compacted: u64 },
}

/// How many feed messages a watcher may fall behind before it must catch up from the history.
const FEED_CAPACITY: usize = 1_024;
/// A run whose changes hold more than this many bytes of keys and values goes out without them
/// (watchers read it from the history). The feed keeps its last [`FEED_CAPACITY`] messages for
/// the slowest watcher, so this bounds what a slow watcher can make a node hold: 64 MiB.
const FEED_INLINE_BYTES: usize = 64 << 10;

pub struct StateMachine {
    db: sled::Db,
    /// Watchers' live feed; sent to after each apply run and each install.
    feed: tokio::sync::broadcast::Sender<Arc<Feed>>,
    retention: history::Retention,
    /// The node's data dir, where `sm.state` records how the state machine was closed.
    data_dir: PathBuf,
    /// The live tree: applies write to it, readers read it, installs replace it.
    live: Arc<Live>,
    snap_dir: PathBuf,
    clock: Arc<Clock>,
    /// The cut of the snapshot build in progress, if any; apply records pre-images for it.
    cut: Option<Arc<Cut>>,
    /// Held by a snapshot build from its cut to its last byte, and by a snapshot install, so
    /// an install never rewrites the tree under a running scan (and builds never overlap).
    scan_gate: Arc<tokio::sync::Mutex<()>>,
    /// Set while an apply writes and left set if it fails part-way: such a tree must not be
    /// marked clean.
    torn: bool,
    /// The WAL's durable index: an entry is applied only once it is on this node's disk (the
    /// leader reports its own appends flushed before their fsync; see `wal/durable.rs`).
    wal: Option<crate::wal::DurableWatch>,
    /// Why an apply failed, once one has: the node stops then (`node/disk.rs`). Watched
    /// directly, because openraft stops only once its core takes the error, and a core waiting
    /// on a WAL that met the same full disk may never take it.
    failed: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

/// Read access for the API layer. Each call holds the live lock's read side, so a read sees
/// whole applies (apply writes under its write side; sled batches are not used).
#[derive(Clone)]
pub struct SmReader {
    live: Arc<Live>,
    clock: Arc<Clock>,
    feed: tokio::sync::broadcast::Sender<Arc<Feed>>,
}

/// A lock's or an election's queue as one read saw it.
#[derive(Debug)]
pub struct QueueView {
    /// In order of arrival, each with its token.
    pub waiters: Vec<(u64, Waiter)>,
    /// The first waiter holds the lock (leads): its lease is live.
    pub held: bool,
}

impl QueueView {
    /// The holder's token and record.
    pub fn holder(&self) -> Option<&(u64, Waiter)> {
        self.waiters.first().filter(|_| self.held)
    }

    /// Whether `token` is still queued (holding or waiting).
    pub fn has(&self, token: u64) -> bool {
        self.waiters.iter().any(|(t, _)| *t == token)
    }
}

/// A stretch of watch history read in one view of the tree.
#[derive(Debug)]
pub struct HistoryRead {
    /// Entries with changes, in index order, each after the requested index.
    pub records: Vec<(u64, Arc<Vec<history::Change>>)>,
    /// The last index this read covers: every entry up to it with a change is in `records`.
    pub upto: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

impl SmReader {
    /// The live item under `key` in `ns`, or `None` when absent or expired.
    pub fn get(&self, ns: &str, key: &str) -> Result<Option<Item>, ReadError> {
        self.get_indexed(ns, key).map(|(item, _)| item)
    }

    /// [`SmReader::get`], with the applied index the answer reflects (read under the same
    /// lock as the tree, which apply updates together), so a watch can start right after it.
    pub fn get_indexed(&self, ns: &str, key: &str) -> Result<(Option<Item>, u64), ReadError> {
        let tree = self.live.read();
        let applied = self.clock.applied.load(Ordering::Acquire);
        let Some(raw) = tree.get(keys::data_key(ns, key))? else {
            return Ok((None, applied));
        };
        let s: StoredItem = codec::decode(&raw)?;
        if !s.is_live(self.clock_ms()) {
            return Ok((None, applied));
        }
        Ok((Some(item(key, s)), applied))
    }

    /// Up to `limit` live items of `ns` whose key starts with `prefix`, in byte order, strictly
    /// after the key `after` when given. Also says whether more keys may follow.
    pub fn scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Item>, bool), ReadError> {
        self.scan_indexed(ns, prefix, after, limit, max_bytes).map(|(items, more, _)| (items, more))
    }

    /// [`SmReader::scan`], with the applied index the page reflects (see `get_indexed`).
    pub fn scan_indexed(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Item>, bool, u64), ReadError> {
        let mut lo = match after {
            // The smallest key greater than `after`: `after` followed by a zero byte.
            Some(a) if a >= prefix => {
                let mut k = keys::data_key(ns, a);
                k.push(0);
                k
            }
            _ => keys::data_key(ns, prefix),
        };
        // Private keys sort first in a namespace; only a private prefix may reach them, so a
        // client's empty prefix (or a cursor it made up) cannot list a dialect's records.
        if !private::is_private(prefix) {
            lo = lo.max(keys::data_key(ns, private::FIRST_PUBLIC));
        }
        let scope = keys::data_key(ns, prefix);
        let clock = self.clock_ms();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let tree = self.live.read();
        let applied = self.clock.applied.load(Ordering::Acquire);
        for kv in tree.range(lo..) {
            let (k, v) = kv?;
            if !k.starts_with(&scope) {
                return Ok((out, false, applied));
            }
            let s: StoredItem = codec::decode(&v)?;
            if !s.is_live(clock) {
                continue;
            }
            // A page ends at `limit` items, or early once its values pass `max_bytes` (never
            // empty, so a caller following cursors always moves on).
            if out.len() == limit || (!out.is_empty() && bytes + s.value.len() > max_bytes) {
                return Ok((out, true, applied));
            }
            let Some((_, key)) = keys::parse_data_key(&k) else { continue };
            bytes += s.value.len();
            out.push(item(key, s));
        }
        Ok((out, false, applied))
    }

    /// Whether `id` was removed from the cluster at some point (ids are never reused).
    pub fn is_retired(&self, id: u64) -> Result<bool, ReadError> {
        Ok(self.live.read().contains_key(keys::retired_key(id))?)
    }

    /// The live token `id`, or `None` when absent or expired: an expired token is refused like
    /// an unknown one, on every node alike, because all judge it by the replicated clock.
    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>, ReadError> {
        let tree = self.live.read();
        let rec = keys::read_token(id, |k| tree.get(k).map_err(ReadError::from))?;
        Ok(rec.filter(|r| r.is_live(self.clock_ms())))
    }

    /// Keys stored per namespace (expired-but-undeleted ones included).
    pub fn namespace_counts(&self) -> Result<Vec<(String, u64)>, ReadError> {
        let mut out = Vec::new();
        for kv in self.live.read().scan_prefix([keys::COUNT]) {
            let (k, v) = kv?;
            out.push((String::from_utf8_lossy(&k[1..]).into_owned(), keys::decode_count(&v)));
        }
        Ok(out)
    }

    /// Every live token, in id order.
    pub fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, ReadError> {
        let tree = self.live.read();
        let clock = self.clock_ms();
        let mut out = Vec::new();
        for kv in tree.scan_prefix([keys::TOKEN]) {
            let (k, v) = kv?;
            let id = String::from_utf8_lossy(&k[1..]).into_owned();
            let rec = keys::decode_token(&id, &v, |k| tree.get(k).map_err(ReadError::from))?;
            if rec.is_live(clock) {
                out.push((id, rec));
            }
        }
        Ok(out)
    }

    pub fn clock_ms(&self) -> u64 {
        self.clock.ms.load(Ordering::Acquire)
    }

    /// The highest log index applied to what this reader sees.
    /// The live feed of applies and installs, for watchers. Subscribe before reading the
    /// history, so that nothing applied in between is missed.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Feed>> {
        self.feed.subscribe()
    }

    /// The history after `after`, up to the applied index or to `max` records, in one view of
    /// the tree. `Err(Ok(compacted))` when `after` is below the history's floor.
    #[allow(clippy::type_complexity)]
    pub fn history_after(&self, after: u64, max: usize) -> Result<Result<HistoryRead, u64>, ReadError> {
        let tree = self.live.read();
        let applied = self.clock.applied.load(Ordering::Acquire);
        let meta = match tree.get(keys::META_HISTORY)? {
            Some(v) => history::decode_meta(&v)?,
            None => history::Meta::default(),
        };
        if after < meta.compacted {
            return Ok(Err(meta.compacted));
        }
        let (lo, hi) = history::range_after(after);
        let mut records = Vec::new();
        let mut upto = applied.max(after);
        for kv in tree.range(lo..hi) {
            let (k, v) = kv?;
            let Some(index) = history::parse_key(&k) else { break };
            if index > applied {
                break;
            }
            if records.len() == max {
                upto = records.last().map_or(after, |(i, _)| *i);
                break;
            }
            records.push((index, Arc::new(history::decode(&v)?.changes)));
        }
        Ok(Ok(HistoryRead { records, upto }))
    }

    pub fn applied_index(&self) -> u64 {
        self.clock.applied.load(Ordering::Acquire)
    }

    /// The earliest expiry of a key, a token, a lease or a lock delay, for the leader's expiry
    /// ticker. All count because the replicated clock moves only with entries: on an idle
    /// cluster, the `Expire` the ticker proposes is what carries the clock past them on every
    /// node.
    pub fn next_expiry(&self) -> Option<u64> {
        let tree = self.live.read();
        let first = |prefix: u8| {
            let (k, _) = tree.scan_prefix([prefix]).next()?.ok()?;
            keys::index_time(&k)
        };
        [
            first(keys::EXPIRY),
            first(keys::TOKEN_EXPIRY_INDEX),
            first(keys::LEASE_EXPIRY_INDEX),
            first(keys::LOCK_DELAY_INDEX),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Lease `id` when it is live and belongs to `ns`, with the keys attached to it in order.
    pub fn lease(&self, ns: &str, id: u64) -> Result<Option<(LeaseRecord, Vec<String>)>, ReadError> {
        let tree = self.live.read();
        let Some(raw) = tree.get(keys::lease_key(id))? else { return Ok(None) };
        let rec: LeaseRecord = codec::decode(&raw)?;
        if rec.namespace != ns || !rec.is_live(self.clock_ms()) {
            return Ok(None);
        }
        let (lo, hi) = keys::attached_range(id);
        let mut attached = Vec::new();
        for kv in tree.range(lo..hi) {
            let (k, _) = kv?;
            if let Some((_, key)) = keys::attached_target(&k).and_then(keys::parse_data_key) {
                attached.push(key.to_string());
            }
        }
        Ok(Some((rec, attached)))
    }

    /// Lock's or election's `name` queue in `ns`: every waiter in order, with its token, and
    /// whether the first one holds (its lease is live at this node's clock).
    pub fn queue(&self, ns: &str, queue: Queue, name: &str) -> Result<QueueView, ReadError> {
        let tree = self.live.read();
        let clock = self.clock_ms();
        let prefix = keys::queue_prefix(queue.tag(), ns, name);
        let mut waiters = Vec::new();
        for kv in tree.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let Some((_, _, _, token)) = keys::parse_waiter_key(&k) else { continue };
            waiters.push((token, codec::decode::<Waiter>(&v)?));
        }
        let delayed = queue == Queue::Lock
            && tree
                .get(keys::lock_delay_key(ns, name))?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .is_some_and(|until| u64::from_be_bytes(until) > clock);
        let held = !delayed
            && match waiters.first() {
                Some((_, w)) => match tree.get(keys::lease_key(w.lease))? {
                    Some(raw) => codec::decode::<LeaseRecord>(&raw)?.is_live(clock),
                    None => false,
                },
                None => false,
            };
        Ok(QueueView { waiters, held })
    }

    /// Every live lease of `ns`, in id order.
    pub fn leases(&self, ns: &str) -> Result<Vec<(u64, LeaseRecord)>, ReadError> {
        let tree = self.live.read();
        let clock = self.clock_ms();
        let mut out = Vec::new();
        for kv in tree.scan_prefix([keys::LEASE]) {
            let (k, v) = kv?;
            let Some(id) = keys::parse_lease_key(&k) else { continue };
            let rec: LeaseRecord = codec::decode(&v)?;
            if rec.namespace == ns && rec.is_live(clock) {
                out.push((id, rec));
            }
        }
        Ok(out)
    }
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

impl StateMachine {
    pub fn open(dir: &Path, opts: &SmOptions) -> io::Result<StateMachine> {
        StateMachine::open_in_boot(dir, opts, close::current_boot().as_deref())
    }

    /// [`StateMachine::open`] as if the kernel's boot id were `boot` (tests restart "machines").
    fn open_in_boot(dir: &Path, opts: &SmOptions, boot: Option<&str>) -> io::Result<StateMachine> {
        let last_close = close::read(dir)?;
        let verdict = close::verdict(&last_close, boot);
        let sled_dir = dir.join("sm");
        if verdict == Verdict::MachineRestart && sled_dir.exists() {
            // Not even opened: after a power loss sled's unsynced files may not open at all.
            tracing::info!(
                "state machine was not closed cleanly and the machine restarted since; rebuilding it from its snapshot and log"
            );
            fs::remove_dir_all(&sled_dir)?;
        }
        let db = sled::Config::new()
            .path(&sled_dir)
            .cache_capacity(opts.cache_bytes)
            .flush_every_ms(opts.flush_every_ms)
            .open()
            .map_err(io::Error::other)?;
        let live_name = match db.get(keys::LIVE_TREE).map_err(io::Error::other)? {
            Some(n) => n.to_vec(),
            None => keys::FIRST_TREE.to_vec(),
        };
        let tree = db.open_tree(&live_name).map_err(io::Error::other)?;
        for name in db.tree_names() {
            if keys::is_state_tree(&name) && name != live_name {
                tracing::info!(tree = %String::from_utf8_lossy(&name), "dropping a state tree left by an unfinished install");
                db.drop_tree(&name).map_err(io::Error::other)?;
            }
        }
        let snap_dir = dir.join("snapshots");
        fs::create_dir_all(&snap_dir)?;
        for leftover in [BUILDING, RECEIVING, INSTALLING] {
            let _ = fs::remove_file(snap_dir.join(leftover));
        }
        match tree.get(keys::META_FORMAT).map_err(io::Error::other)? {
            Some(v) => {
                let f: u32 = codec::decode(&v).map_err(io::Error::other)?;
                if f != keys::FORMAT_VERSION {
                    return Err(io::Error::other(format!("state machine format {f} is not supported")));
                }
            }
            None => {
                let v = codec::encode(&keys::FORMAT_VERSION).map_err(io::Error::other)?;
                tree.insert(keys::META_FORMAT, v).map_err(io::Error::other)?;
            }
        }
        let live = Arc::new(Live::new(tree));
        let sm = StateMachine {
            db,
            feed: tokio::sync::broadcast::channel(FEED_CAPACITY).0,
            retention: opts.watch_history,
            live,
            data_dir: dir.to_path_buf(),
            snap_dir,
            clock: Arc::default(),
            cut: None,
            scan_gate: Arc::default(),
            torn: false,
            wal: None,
            failed: Arc::new(tokio::sync::watch::channel(None).0),
        };
        let current = sm.snap_dir.join(CURRENT);
        let snapshot = current.exists().then_some(current.as_path());
        let mut loaded = false;
        match verdict {
            Verdict::MachineRestart => {
                load_snapshot(&sm.db, &sm.live, &sm.clock, snapshot)?;
                loaded = true;
            }
            Verdict::ProcessCrash => {
                let redone = finish_redo(&sm.tree())?;
                tracing::info!(
                    applied = ?sm.last_applied().map_err(io::Error::other)?,
                    redone,
                    "state machine was not closed cleanly; kept it and finished its last apply from its redo record"
                );
            }
            Verdict::CheckMarker => {
                let applied = sm.last_applied().map_err(io::Error::other)?;
                let clean = sm.tree().contains_key(keys::META_CLEAN).map_err(io::Error::other)?;
                if applied.is_some() && !clean {
                    tracing::info!(
                        ?applied,
                        from_snapshot = snapshot.is_some(),
                        "state machine was not closed cleanly; rebuilding it from its snapshot and log"
                    );
                    load_snapshot(&sm.db, &sm.live, &sm.clock, snapshot)?;
                    loaded = true;
                }
            }
        }
        if let (false, Some(path)) = (loaded, snapshot) {
            let meta = snapshot::read_meta(path)?;
            let applied = sm.last_applied().map_err(io::Error::other)?;
            let installing = sm.tree().contains_key(keys::META_INSTALLING).map_err(io::Error::other)?;
            if installing || applied < meta.last_log_id {
                tracing::info!(?applied, snapshot = ?meta.last_log_id, "state machine is behind its snapshot; reloading it");
                load_snapshot(&sm.db, &sm.live, &sm.clock, snapshot)?;
            }
        }
        // Durable before any apply changes sled: from here on, only this boot may trust it
        // without its clean close.
        close::mark_open(dir, boot)?;
        // Removed before any apply, so any later write follows the removal in sled's log and a
        // crash can never leave a half-applied tree that still says it was closed cleanly.
        let tree = sm.tree();
        tree.remove(keys::META_CLEAN).map_err(io::Error::other)?;
        if !tree.contains_key(keys::META_HISTORY).map_err(io::Error::other)? {
            // A tree from before the history (or new): nothing at or below what it applied.
            let applied = sm.last_applied().map_err(io::Error::other)?.map_or(0, |l| l.index);
            let meta = history::Meta { compacted: applied, bytes: 0 };
            tree.insert(keys::META_HISTORY, enc(&meta)?).map_err(io::Error::other)?;
        }
        tree.flush().map_err(io::Error::other)?;
        load_clock(&tree, &sm.clock)?;
        Ok(sm)
    }

    /// Applies wait for the WAL to hold their entries durably (see the `wal` field).
    pub fn wait_for_wal(&mut self, wal: crate::wal::DurableWatch) {
        self.wal = Some(wal);
    }

    /// Why an apply failed, once one has (`None` while applies succeed).
    pub fn failed(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.failed.subscribe()
    }

    pub fn reader(&self) -> SmReader {
        SmReader { live: self.live.clone(), clock: self.clock.clone(), feed: self.feed.clone() }
    }

    /// A handle on the live tree (sled trees are shared handles).
    fn tree(&self) -> sled::Tree {
        self.live.read().clone()
    }

    fn last_applied(&self) -> Result<Option<LogId>, ReadError> {
        match self.tree().get(keys::META_LAST_APPLIED)? {
            Some(v) => Ok(codec::decode(&v)?),
            None => Ok(None),
        }
    }

    fn membership(&self) -> Result<Membership, ReadError> {
        match self.tree().get(keys::META_MEMBERSHIP)? {
            Some(v) => Ok(codec::decode(&v)?),
            None => Ok(Membership::default()),
        }
    }
}

/// Finishes the apply a crash cut short: rewrites the last redo record's keys (idempotent when
/// they all landed) and flushes. Returns how many keys it rewrote.
///
/// sled recovered a prefix of this process's single-key writes, and every apply writes its redo
/// record first, so the prefix ends inside the write set of the last record it holds, or right
/// after it: everything before that record is whole.
fn finish_redo(tree: &sled::Tree) -> io::Result<usize> {
    let Some(raw) = tree.get(keys::META_REDO).map_err(io::Error::other)? else { return Ok(0) };
    let writes = redo::Writes::from_redo_record(&raw).map_err(io::Error::other)?;
    let n = writes.keys().count();
    writes.write_to(tree).map_err(io::Error::other)?;
    tree.flush().map_err(io::Error::other)?;
    Ok(n)
}

/// Publishes the persisted logical clock to readers.
fn load_clock(t: &sled::Tree, clock: &Clock) -> io::Result<()> {
    let c = match t.get(keys::META_CLOCK).map_err(io::Error::other)? {
        Some(v) => codec::decode(&v).map_err(io::Error::other)?,
        None => 0,
    };
    let applied: Option<LogId> = match t.get(keys::META_LAST_APPLIED).map_err(io::Error::other)? {
        Some(v) => codec::decode(&v).map_err(io::Error::other)?,
        None => None,
    };
    clock.ms.store(c, Ordering::Release);
    clock.applied.store(applied.map_or(0, |a| a.index), Ordering::Release);
    Ok(())
}

fn enc<T: serde::Serialize>(v: &T) -> io::Result<Vec<u8>> {
    codec::encode(v).map_err(io::Error::other)
}

/// Replaces the whole state with the snapshot file's (or with the empty state, given no file)
/// and makes it the live tree.
///
/// The file is loaded into a fresh tree while readers keep using the old one; the db then
/// records the fresh tree as live (after a flush, so a crash can only leave the switch undone)
/// and readers move over. The file is already the durable current snapshot, so a crash at any
/// point is repaired by the next open, which finds no clean marker and loads the file again.
fn load_snapshot(db: &sled::Db, live: &Live, clock: &Clock, path: Option<&Path>) -> io::Result<()> {
    let ioe = io::Error::other;
    let old_name = live.read().name();
    let name = keys::next_state_tree(&old_name);
    let fresh = db.open_tree(&name).map_err(ioe)?;
    fresh.clear().map_err(ioe)?;
    let mut floor = 0;
    if let Some(path) = path {
        let meta = snapshot::load_into(path, &fresh)?;
        fresh.insert(keys::META_LAST_APPLIED, enc(&meta.last_log_id)?).map_err(ioe)?;
        fresh.insert(keys::META_MEMBERSHIP, enc(&meta.last_membership)?).map_err(ioe)?;
        floor = meta.last_log_id.map_or(0, |l| l.index);
    }
    // No history below the snapshot on this replica: watches never cross the hole.
    fresh.insert(keys::META_HISTORY, enc(&history::Meta { compacted: floor, bytes: 0 })?).map_err(ioe)?;
    fresh.insert(keys::META_FORMAT, enc(&keys::FORMAT_VERSION)?).map_err(ioe)?;
    fresh.flush().map_err(ioe)?;
    db.insert(keys::LIVE_TREE, name.as_slice()).map_err(ioe)?;
    db.flush().map_err(ioe)?;
    *live.write() = fresh.clone();
    load_clock(&fresh, clock)?;
    // No reader can still be inside the old tree: each holds the live lock for its whole call.
    db.drop_tree(&old_name).map_err(ioe)?;
    Ok(())
}

/// Writes the snapshot fixed by `get_snapshot_builder`'s cut. openraft runs it in its own
/// task while applies go on; see `cut.rs` for how the file still shows the state at the cut.
pub struct SnapshotBuilder {
    tree: sled::Tree,
    dir: PathBuf,
    head: Result<SnapshotMeta, io::Error>,
    cut: Arc<Cut>,
    gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let meta = match &self.head {
            Ok(m) => m.clone(),
            Err(e) => {
                self.cut.finish();
                return Err(StorageIOError::write_snapshot(None, e).into());
            }
        };
        let (tree, dir, cut, gate) = (self.tree.clone(), self.dir.clone(), self.cut.clone(), self.gate.take());
        let started = std::time::Instant::now();
        let m = meta.clone();
        let built = tokio::task::spawn_blocking(move || {
            let _gate = gate;
            let tmp = dir.join(BUILDING);
            let written = snapshot::write(cut::scan(&cut, &tree), &m, &tmp);
            // Also on error: recording must stop whatever happened to the scan.
            cut.finish();
            let pairs = written?;
            // sled hands the kernel at least the state at the cut before the file claims it, so
            // a crash soon after never leaves sled behind its snapshot (that would cost a
            // reload; the WAL below the snapshot may be purged).
            tree.flush().map_err(io::Error::other)?;
            let current = dir.join(CURRENT);
            fs::rename(&tmp, &current)?;
            crate::fsync::dir(&dir)?;
            tracing::info!(last = ?m.last_log_id, pairs, "snapshot written");
            Ok::<_, io::Error>(current)
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        let path = built.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        METRICS.snapshot_build.observe(started.elapsed());
        METRICS.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

impl StateMachine {
    async fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<Vec<ProposalResult>, StorageError> {
        if let (Some(wal), Some(last)) = (&self.wal, entries.last()) {
            wal.wait_for(last.log_id.index).await.map_err(|e| StorageIOError::apply(last.log_id, &e))?;
        }
        let tree = self.tree();
        let mut applier = Applier::new(&tree).map_err(sm_err)?.with_retention(self.retention);
        let mut out = Vec::new();
        for entry in &entries {
            let r = applier.apply_entry(entry).map_err(|e| StorageIOError::apply(entry.log_id, &e))?;
            out.push(r);
        }
        let expired: u64 = out
            .iter()
            .flat_map(|r| &r.results)
            .map(|c| if let crate::model::command::CmdResult::Expired { count } = c { *count } else { 0 })
            .sum();
        METRICS.expired_keys.fetch_add(expired, Ordering::Relaxed);
        let clock = applier.clock;
        let changes = std::mem::take(&mut applier.published);
        let size: usize = changes
            .iter()
            .flat_map(|(_, c)| c.iter())
            .map(|c| c.key.len() + c.value.as_ref().map_or(0, String::len))
            .sum();
        let changes = (size <= FEED_INLINE_BYTES).then_some(changes);
        let writes = applier.finish().map_err(|e| StorageIOError::write_state_machine(&e))?;
        if let Some(cut) = &self.cut {
            if cut.is_active() {
                cut.record(&tree, writes.keys()).map_err(|e| StorageIOError::write_state_machine(&e))?;
            } else {
                self.cut = None;
            }
        }
        {
            let live = self.live.write();
            self.torn = true;
            // A test failpoint: as if sled failed part-way through the writes.
            crate::failpoint::hit(crate::failpoint::Point::SmWrite)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            // With its redo record: sled recovers a prefix of these writes after a crash, and
            // the record lets the next open finish them (`redo.rs`, `finish_redo`).
            writes.write_to(&live).map_err(|e| StorageIOError::write_state_machine(&e))?;
            self.torn = false;
            self.clock.ms.store(clock, Ordering::Release);
            if let Some(last) = entries.last() {
                self.clock.applied.store(last.log_id.index, Ordering::Release);
            }
        }
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            // After the writes: a watcher that reads the history first and the feed next sees
            // this run in one or the other (or both; it skips what it has).
            let at = std::time::Instant::now();
            let run = Feed::Applied { first: first.log_id.index, last: last.log_id.index, changes, at };
            let _ = self.feed.send(Arc::new(run));
        }
        Ok(out)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.last_applied().map_err(sm_err)?, self.membership().map_err(sm_err)?))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let applied = self.apply_entries(entries.into_iter().collect()).await;
        if let Err(e) = &applied {
            self.failed.send_replace(Some(e.to_string()));
        }
        applied
    }

    /// Fixes the cut: called on the state machine's task, between two applies, so the tree
    /// holds exactly the applied state. The scan itself runs later, in `build_snapshot`.
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Waits out a build still running (openraft starts one at a time; this is a guard).
        let gate = self.scan_gate.clone().lock_owned().await;
        let head = self.last_applied().and_then(|a| Ok((a, self.membership()?))).map_err(io::Error::other).map(
            |(last, membership)| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let id = match last {
                    Some(l) => format!("{}-{}-{nanos}", l.leader_id, l.index),
                    None => format!("0-0-{nanos}"),
                };
                SnapshotMeta { last_log_id: last, last_membership: membership, snapshot_id: id }
            },
        );
        let cut = Arc::new(Cut::default());
        self.cut = Some(cut.clone());
        SnapshotBuilder { tree: self.tree(), dir: self.snap_dir.clone(), head, cut, gate: Some(gate) }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.snap_dir.join(RECEIVING))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(file))
    }

    /// Copies the received data (from whatever handle openraft passes) into a file of our
    /// own, fsyncs and validates it, makes it the current snapshot, then replaces the state.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let sig = Some(meta.signature());
        let mut src = snapshot.into_std().await;
        let dir = self.snap_dir.clone();
        let (db, live, clock) = (self.db.clone(), self.live.clone(), self.clock.clone());
        let expect = meta.clone();
        // The install replaces the tree, so it waits for a running build's scan to end.
        let gate = self.scan_gate.clone().lock_owned().await;
        let r = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let _gate = gate;
            use std::io::{Seek, SeekFrom};
            let tmp = dir.join(INSTALLING);
            {
                src.seek(SeekFrom::Start(0))?;
                let mut dst = fs::File::create(&tmp)?;
                io::copy(&mut src, &mut dst)?;
                crate::fsync::file(&dst, &tmp)?;
            }
            let got = snapshot::validate(&tmp)?;
            if got.last_log_id != expect.last_log_id {
                return Err(io::Error::other("received snapshot does not match its announced meta"));
            }
            let current = dir.join(CURRENT);
            fs::rename(&tmp, &current)?;
            crate::fsync::dir(&dir)?;
            let _ = fs::remove_file(dir.join(RECEIVING));
            load_snapshot(&db, &live, &clock, Some(&current))
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        r.map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
        let compacted = meta.last_log_id.map_or(0, |l| l.index);
        let _ = self.feed.send(Arc::new(Feed::Reset { compacted }));
        METRICS.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let path = self.snap_dir.join(CURRENT);
        if !path.exists() {
            return Ok(None);
        }
        let meta = snapshot::read_meta(&path).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}

/// The clean close: runs after the last apply (openraft drops the state machine when its worker
/// stops). The marker is written behind every applied key, so finding it on open means sled
/// holds every apply whole. A failed apply leaves the tree torn, and it is not marked.
impl Drop for StateMachine {
    fn drop(&mut self) {
        if self.torn {
            tracing::warn!("an apply failed part-way; the next open rebuilds the state machine");
            return;
        }
        let tree = self.tree();
        let closed = tree
            .insert(keys::META_CLEAN, Vec::new())
            .and_then(|_| self.db.flush())
            .map_err(io::Error::other)
            .and_then(|_| close::sync_tree(&self.data_dir.join("sm")))
            .and_then(|_| close::mark_clean(&self.data_dir));
        if let Err(e) = closed {
            tracing::warn!(error = %e, "could not mark the state machine closed cleanly");
        }
    }
}

impl SmReader {
    /// Best-effort flush at shutdown; durability comes from the WAL, this only shortens the
    /// replay on the next start.
    pub fn flush(&self) {
        if let Err(e) = self.live.read().flush() {
            tracing::warn!(error = %e, "sled flush at shutdown");
        }
    }
}

#[cfg(test)]
mod tests;

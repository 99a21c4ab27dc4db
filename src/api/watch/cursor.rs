//! A watcher's ordered pipeline: the history first, then the live feed, back to the history
//! whenever it falls behind the feed. Everything a watcher sends comes out of [`Cursor::next`]
//! in index order, so a progress index taken from [`Cursor::position`] never passes a change
//! not yet sent.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::metrics::METRICS;
use crate::sm::history::Change;
use crate::sm::{Feed, ReadError, SmReader};

/// History records read per view of the tree while catching up.
const BATCH: usize = 256;

pub enum Step {
    /// The entry `index` changed watched keys: these (the entry's other changes left out).
    /// `live`: when the apply published it, for a live event (not read from the history).
    Changes { index: u64, changes: Vec<Change>, live: Option<std::time::Instant> },
    /// The history no longer reaches back to the position.
    Compacted { compacted: u64, current: u64 },
    /// Nothing more by the deadline; the position may have moved past filtered entries.
    Idle,
    /// The feed ended: the state machine is gone.
    Closed,
}

pub struct Cursor {
    reader: SmReader,
    feed: tokio::sync::broadcast::Receiver<Arc<Feed>>,
    ns: String,
    prefix: String,
    /// Every entry up to here has been handled: sent, or left out by the filter.
    position: u64,
    backlog: VecDeque<(u64, Arc<Vec<Change>>)>,
    /// Where the position stands once the backlog is handled.
    backlog_upto: u64,
    backlog_at: Option<std::time::Instant>,
    catching_up: bool,
}

impl Cursor {
    /// A cursor after `position`. Subscribe `feed` before anything is read, so no apply falls
    /// between the history read and the feed.
    pub fn new(
        reader: SmReader,
        feed: tokio::sync::broadcast::Receiver<Arc<Feed>>,
        ns: String,
        prefix: String,
        position: u64,
    ) -> Cursor {
        Cursor {
            reader,
            feed,
            ns,
            prefix,
            position,
            backlog: VecDeque::new(),
            backlog_upto: position,
            backlog_at: None,
            catching_up: true,
        }
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    fn matching(&self, changes: &[Change]) -> Vec<Change> {
        changes.iter().filter(|c| c.ns == self.ns && c.key.starts_with(&self.prefix)).cloned().collect()
    }

    /// The next entry with watched changes, or why there is none by `until`.
    pub async fn next(&mut self, until: Instant) -> Result<Step, ReadError> {
        loop {
            while let Some((index, changes)) = self.backlog.pop_front() {
                self.position = index;
                let matched = self.matching(&changes);
                if !matched.is_empty() {
                    return Ok(Step::Changes { index, changes: matched, live: self.backlog_at });
                }
            }
            self.position = self.position.max(self.backlog_upto);
            if Instant::now() >= until {
                return Ok(Step::Idle);
            }
            if self.catching_up {
                match self.reader.history_after(self.position, BATCH)? {
                    Err(compacted) => {
                        METRICS.watch_compacted.fetch_add(1, Ordering::Relaxed);
                        return Ok(Step::Compacted { compacted, current: self.reader.applied_index() });
                    }
                    Ok(read) => {
                        self.catching_up = read.records.len() == BATCH;
                        self.backlog = read.records.into();
                        self.backlog_upto = read.upto;
                        self.backlog_at = None;
                    }
                }
                continue;
            }
            let msg = match tokio::time::timeout_at(until, self.feed.recv()).await {
                Err(_) => return Ok(Step::Idle),
                Ok(Err(RecvError::Closed)) => return Ok(Step::Closed),
                Ok(Err(RecvError::Lagged(_))) => {
                    // Fell behind the feed: what it dropped is in the history.
                    METRICS.watch_catchups.fetch_add(1, Ordering::Relaxed);
                    self.catching_up = true;
                    continue;
                }
                Ok(Ok(msg)) => msg,
            };
            match &*msg {
                Feed::Applied { first, last, changes, at } => {
                    if *last <= self.position {
                        continue;
                    }
                    if *first > self.position + 1 {
                        // Not expected (the feed was subscribed before the history was read),
                        // but never streamed across: the history has what lies between.
                        self.catching_up = true;
                        continue;
                    }
                    let Some(changes) = changes else {
                        // Too large to ride the feed: the history has it.
                        self.catching_up = true;
                        continue;
                    };
                    self.backlog = changes.iter().filter(|(i, _)| *i > self.position).cloned().collect();
                    self.backlog_upto = *last;
                    self.backlog_at = Some(*at);
                }
                Feed::Reset { compacted } => {
                    if self.position < *compacted {
                        METRICS.watch_compacted.fetch_add(1, Ordering::Relaxed);
                        let current = self.reader.applied_index();
                        return Ok(Step::Compacted { compacted: *compacted, current });
                    }
                }
            }
        }
    }
}

//! The caps on open watches (`--max-watchers`, `--max-watchers-per-namespace`): a watch holds a
//! [`Slot`] for as long as it is open, and the slot frees itself when the stream ends, however
//! it ends (the client left, the node drains, the token was revoked).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::code::Code;
use super::error::ApiError;
use crate::config::WatcherLimits;
use crate::metrics::METRICS;

/// Open watches on this node: in all, and per namespace. A std mutex, never held across an
/// await.
#[derive(Default)]
pub struct Watchers {
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// One open watch's place under the caps.
pub struct Slot {
    watchers: Arc<Watchers>,
    ns: String,
}

impl Watchers {
    /// Takes a slot for a watch on `ns`, or refuses: 429 `too_many_watchers` when the namespace
    /// is full (its other watchers are the cause), 503 `watchers_full` when the node is.
    pub fn enter(self: &Arc<Self>, ns: &str, limits: WatcherLimits) -> Result<Slot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let in_ns = open.1.get(ns).copied().unwrap_or(0);
        if in_ns >= limits.per_namespace {
            return Err(ApiError::new(
                Code::TooManyWatchers,
                format!("namespace `{ns}` has {in_ns} open watches on this node, its limit"),
            )
            .retry_after(5));
        }
        if open.0 >= limits.per_node {
            return Err(ApiError::new(Code::WatchersFull, format!("this node serves {} watches, its limit", open.0))
                .retry_after(5));
        }
        open.0 += 1;
        *open.1.entry(ns.to_string()).or_default() += 1;
        METRICS.watchers_open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { watchers: self.clone(), ns: ns.to_string() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.watchers.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ns) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ns);
            }
        }
        METRICS.watchers_open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_namespace_and_per_node_and_free_themselves() {
        let w = Arc::new(Watchers::default());
        let limits = WatcherLimits { per_node: 3, per_namespace: 2 };
        let a1 = w.enter("a", limits).unwrap();
        let _a2 = w.enter("a", limits).unwrap();
        assert_eq!(w.enter("a", limits).err().map(|e| e.code), Some(Code::TooManyWatchers));
        let _b1 = w.enter("b", limits).unwrap();
        assert_eq!(w.enter("c", limits).err().map(|e| e.code), Some(Code::WatchersFull));
        drop(a1);
        let _c1 = w.enter("c", limits).unwrap();
        assert_eq!(w.open.lock().unwrap().0, 3);
    }
}

//! Shares ReadIndex rounds between concurrent linearizable reads. A read may use a barrier
//! only if that barrier *started after the read arrived*: a barrier's read index is the commit
//! index when it starts, so an older one could miss a write that completed before the read
//! arrived. At most one barrier runs at a time; readers that arrive meanwhile all share the
//! next one. Under load this turns one quorum round per read into about two per batch.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{watch, Mutex};

use crate::node::error::Error;

pub struct ReadBarrier {
    /// Generation of the most recently *started* barrier.
    started: AtomicU64,
    /// Generation and outcome of the most recently *finished* barrier.
    done: watch::Sender<(u64, Result<(), Error>)>,
    /// Held by the one task running a barrier.
    running: Mutex<()>,
}

impl Default for ReadBarrier {
    fn default() -> Self {
        ReadBarrier { started: AtomicU64::new(0), done: watch::channel((0, Ok(()))).0, running: Mutex::new(()) }
    }
}

impl ReadBarrier {
    /// Returns the outcome of a barrier that started after this call; `run` performs one.
    pub async fn wait<F, Fut>(&self, run: F) -> Result<(), Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), Error>>,
    {
        let arrival = self.started.load(Ordering::SeqCst);
        let mut rx = self.done.subscribe();
        loop {
            {
                let done = rx.borrow_and_update();
                if done.0 > arrival {
                    return done.1.clone();
                }
            }
            if let Ok(_guard) = self.running.try_lock() {
                let done = self.done.borrow().clone();
                if done.0 > arrival {
                    return done.1;
                }
                let gen = self.started.fetch_add(1, Ordering::SeqCst) + 1;
                let result = run().await;
                let _previous = self.done.send_replace((gen, result.clone()));
                return result;
            }
            // The runner may be cancelled without publishing (its client went away), so waiting
            // is bounded and the loop then tries to run a barrier itself.
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_reads_share_rounds_that_started_after_they_arrived() {
        let rb = Arc::new(ReadBarrier::default());
        let rounds = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (rb, rounds) = (rb.clone(), rounds.clone());
            tasks.push(tokio::spawn(async move {
                rb.wait(|| {
                    let rounds = rounds.clone();
                    async move {
                        rounds.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(())
                    }
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let n = rounds.load(Ordering::SeqCst);
        assert!((1..50).contains(&n), "50 readers ran {n} rounds");
        // A read arriving after all that still gets a round of its own.
        rb.wait(|| async { Ok(()) }).await.unwrap();
        assert_eq!(rb.started.load(Ordering::SeqCst) as usize, n + 1);
    }

    #[tokio::test]
    async fn a_failed_round_is_reported_to_its_readers() {
        let rb = ReadBarrier::default();
        let r = rb.wait(|| async { Err(Error::NoLeader) }).await;
        assert!(matches!(r, Err(Error::NoLeader)));
    }
}

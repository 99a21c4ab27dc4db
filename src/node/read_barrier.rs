//! Shares ReadIndex rounds between concurrent linearizable reads. A read may use a barrier
//! only if that barrier *started after the read arrived*: a barrier's read index is the commit
//! index when it starts, so an older one could miss a write that completed before the read
//! arrived. At most one barrier runs at a time; readers that arrive meanwhile all share the
//! next one. Under load this turns one quorum round per read into about two per batch.
//!
//! A barrier retries a round that was only slow (no quorum answered within openraft's one
//! heartbeat interval while this node still leads): on a loaded machine such rounds come in
//! bursts of a few hundred milliseconds, and failing them told clients there was no leader
//! when there was (issue 14 §3). Each read waits until its own deadline at most.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{watch, Mutex, MutexGuard};
use tokio::time::Instant;

use crate::node::error::Error;

/// Rounds start at most this often. A round that timed out has already waited longer, so it
/// is retried at once; one that failed at once (a peer refused the connection) waits, so that
/// a retrying barrier does not spin.
const ROUND_SPACING: Duration = Duration::from_millis(50);

/// Why one ReadIndex round did not confirm this node's leadership.
#[derive(Debug)]
pub enum RoundError {
    /// No quorum answered in time, but this node still leads in the same term: the round was
    /// slow, which says nothing about leadership. The barrier runs another.
    Slow,
    /// Leadership is lost (or the node is stopping); every reader sharing the barrier gets this.
    Failed(Error),
}

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
    /// Returns the outcome of a barrier that started after this call; `round` performs one
    /// ReadIndex round. A read still unconfirmed at `deadline` fails with `NoLeader`: nothing
    /// was read, and the client may retry.
    pub async fn wait<F, Fut>(&self, deadline: Instant, round: F) -> Result<(), Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), RoundError>>,
    {
        // If this read is running the barrier, dropping it at the deadline leaves the barrier
        // unpublished; the readers sharing it then run one of their own (see `share`).
        tokio::time::timeout_at(deadline, self.share(round)).await.unwrap_or(Err(Error::NoLeader))
    }

    async fn share<F, Fut>(&self, round: F) -> Result<(), Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), RoundError>>,
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
            if let Ok(lock) = self.running.try_lock() {
                let done = self.done.borrow().clone();
                if done.0 > arrival {
                    return done.1;
                }
                let gen = self.started.fetch_add(1, Ordering::SeqCst) + 1;
                let running = Running { barrier: self, lock: Some(lock) };
                let result = confirm(&round).await;
                running.publish(gen, result.clone());
                return result;
            }
            // The barrier being run ends by notifying, published or cancelled (its client went
            // away, or its deadline passed: see `Running`), after it let go of `running`; this
            // read then takes its outcome or runs a barrier itself, at once rather than after
            // a polling timer (it was 50 ms). The receiver saw the current value before
            // `try_lock`, so a notification sent since is not missed. The sender lives as long
            // as `self`.
            if rx.changed().await.is_err() {
                return Err(Error::NoLeader);
            }
        }
    }
}

/// The one running barrier's hold on `running`. It lets go of the lock *before* it notifies
/// the waiting reads, so that any of them that must run a barrier of its own (it arrived after
/// this one started, or this one was cancelled) finds the lock free when it wakes.
struct Running<'a> {
    barrier: &'a ReadBarrier,
    lock: Option<MutexGuard<'a, ()>>,
}

impl Running<'_> {
    /// Publishes the outcome of barrier `gen`. A later barrier may have started and published
    /// in the moment between the unlock and this, so an older outcome never replaces a newer.
    fn publish(mut self, gen: u64, result: Result<(), Error>) {
        drop(self.lock.take());
        self.barrier.done.send_modify(|done| {
            if gen > done.0 {
                *done = (gen, result);
            }
        });
    }
}

impl Drop for Running<'_> {
    /// Cancelled before publishing: wake the waiting reads all the same, so they run a barrier
    /// of their own instead of waiting for one that will never finish.
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            drop(lock);
            self.barrier.done.send_modify(|_| {});
        }
    }
}

/// Runs rounds until one confirms leadership or one finds it lost. Every round started after
/// the barrier did, so any of them serves every reader sharing the barrier.
async fn confirm<F, Fut>(round: &F) -> Result<(), Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), RoundError>>,
{
    loop {
        let start = Instant::now();
        match round().await {
            Ok(()) => return Ok(()),
            Err(RoundError::Failed(e)) => return Err(e),
            Err(RoundError::Slow) => tokio::time::sleep_until(start + ROUND_SPACING).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// A round that is slow `slow` times, then ends with `last`; counts the rounds run.
    fn rounds_then(
        slow: usize,
        last: Result<(), Error>,
    ) -> (Arc<AtomicUsize>, impl Fn() -> std::future::Ready<Result<(), RoundError>>) {
        let n = Arc::new(AtomicUsize::new(0));
        let counter = n.clone();
        let round = move || {
            let i = counter.fetch_add(1, Ordering::SeqCst);
            std::future::ready(match (&last, i < slow) {
                (_, true) => Err(RoundError::Slow),
                (Ok(()), false) => Ok(()),
                (Err(e), false) => Err(RoundError::Failed(e.clone())),
            })
        };
        (n, round)
    }

    fn in_secs(s: u64) -> Instant {
        Instant::now() + Duration::from_secs(s)
    }

    #[tokio::test]
    async fn concurrent_reads_share_rounds_that_started_after_they_arrived() {
        let rb = Arc::new(ReadBarrier::default());
        let rounds = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (rb, rounds) = (rb.clone(), rounds.clone());
            tasks.push(tokio::spawn(async move {
                rb.wait(in_secs(60), || {
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
        rb.wait(in_secs(60), || async { Ok(()) }).await.unwrap();
        assert_eq!(rb.started.load(Ordering::SeqCst) as usize, n + 1);
    }

    #[tokio::test]
    async fn a_failed_round_is_reported_to_its_readers() {
        let rb = ReadBarrier::default();
        let r = rb.wait(in_secs(60), || async { Err(RoundError::Failed(Error::NoLeader)) }).await;
        assert!(matches!(r, Err(Error::NoLeader)));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_rounds_are_retried_until_one_confirms() {
        let rb = ReadBarrier::default();
        let (rounds, round) = rounds_then(5, Ok(()));
        rb.wait(in_secs(10), round).await.unwrap();
        assert_eq!(rounds.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn readers_sharing_a_retried_barrier_all_get_its_confirmation() {
        let rb = Arc::new(ReadBarrier::default());
        let (rounds, round) = rounds_then(3, Ok(()));
        let round = Arc::new(round);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (rb, round) = (rb.clone(), round.clone());
            tasks.push(tokio::spawn(async move { rb.wait(in_secs(10), || round()).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Three slow rounds in all, not three per reader: the first barrier absorbed them.
        assert!(rounds.load(Ordering::SeqCst) < 20, "{} rounds", rounds.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_still_unconfirmed_at_its_deadline_fails_with_no_leader() {
        let rb = ReadBarrier::default();
        let (rounds, round) = rounds_then(usize::MAX, Ok(()));
        let start = Instant::now();
        let r = rb.wait(start + Duration::from_secs(2), round).await;
        assert!(matches!(r, Err(Error::NoLeader)), "{r:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // Rounds that fail at once are spaced out rather than run back to back.
        let n = rounds.load(Ordering::SeqCst);
        assert!((39..=41).contains(&n), "{n} rounds in 2 s");
    }

    /// The reader running a barrier gives up at its own deadline, while the round it started
    /// never answers. A reader waiting on that barrier must not wait for it any longer: it
    /// runs a round of its own at once, which here answers at once.
    #[tokio::test(start_paused = true)]
    async fn readers_waiting_on_a_cancelled_barrier_run_their_own_at_once() {
        let rb = Arc::new(ReadBarrier::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let round = {
            let calls = calls.clone();
            move || {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                }
            }
        };
        let start = Instant::now();
        let runner = {
            let (rb, round) = (rb.clone(), round.clone());
            tokio::spawn(async move { rb.wait(start + Duration::from_millis(1025), round).await })
        };
        // Let the runner start its barrier, then arrive as a reader it cannot serve.
        tokio::task::yield_now().await;
        assert_eq!(rb.started.load(Ordering::SeqCst), 1);
        let waiter = rb.wait(start + Duration::from_secs(10), round).await;
        assert!(waiter.is_ok(), "{waiter:?}");
        assert_eq!(start.elapsed(), Duration::from_millis(1025), "the waiter did not follow the cancellation at once");
        assert!(matches!(runner.await.unwrap(), Err(Error::NoLeader)));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_lost_between_slow_rounds_is_reported_at_once() {
        let rb = ReadBarrier::default();
        let elsewhere = Error::NotLeader { leader: Some((2, "127.0.0.1:7002".into())) };
        let (rounds, round) = rounds_then(3, Err(elsewhere));
        let start = Instant::now();
        let r = rb.wait(start + Duration::from_secs(10), round).await;
        // The new leader is named, so the API layer can forward the read there.
        assert!(matches!(r, Err(Error::NotLeader { leader: Some((2, _)) })), "{r:?}");
        assert_eq!(rounds.load(Ordering::SeqCst), 4);
        assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    }
}

//! What locks and elections share at the HTTP edge: taking a place in a name's queue and
//! waiting, bounded, until it is first; leaving it; reading who holds it. The queue itself and
//! the fencing rule live in the state machine (`sm/queue.rs`).
//!
//! The waiting happens on the leader: a follower replays the whole request there, allowing for
//! the wait. A waiter is woken by every apply on that node and looks only at its own queue, so
//! a release wakes the next waiter alone with an answer; nobody else's client hears a thing.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::code::Code;
use super::error::ApiError;
use super::exec::Blocked;
use super::forward::{self, Replay};
use super::state::AppState;
use crate::model::command::{CmdResult, Command, Queue, Refusal};
use crate::node::error::Error;

/// The longest a lock or a campaign waits for its turn in one request.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// `wait`: `"10s"`, `"500ms"` or a number of seconds (as a string or a number); absent: do
/// not wait.
pub fn parse_wait(v: Option<&Value>) -> Result<Duration, ApiError> {
    let bad = || ApiError::new(Code::InvalidTtl, "wait: a duration such as \"10s\" or \"500ms\", at most 60 s");
    let wait = match v {
        None | Some(Value::Null) => return Ok(Duration::ZERO),
        Some(n @ Value::Number(_)) => Duration::from_secs(super::parse::integral(n).ok_or_else(bad)?),
        Some(Value::String(s)) => super::parse::duration(s).ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    if wait > MAX_WAIT {
        return Err(bad());
    }
    Ok(wait)
}

/// A place in `queue` `name` for `lease`: queued (or found already queued), then waited for
/// until it is first, for at most `wait`. Returns the fencing token. When the wait runs out,
/// the place is given up again and the answer is 409 (`lock_held` or `not_elected`).
#[allow(clippy::too_many_arguments)]
pub async fn take_turn(
    st: &AppState,
    replay: Replay,
    ns: &str,
    queue: Queue,
    name: &str,
    lease: u64,
    value: String,
    wait: Duration,
    lock_delay: Duration,
) -> Result<u64, Blocked> {
    let deadline = Instant::now() + wait;
    if !st.node.is_leader() {
        return Err(forwarded(st, replay, wait).await);
    }
    // Subscribed before the first look, so no apply between the two is missed.
    let mut feed = st.node.reader.subscribe();
    let lock_delay_ms = u64::try_from(lock_delay.as_millis()).unwrap_or(u64::MAX);
    let cmd = Command::Enqueue { ns: ns.to_string(), queue, name: name.to_string(), lease, value, lock_delay_ms };
    let token = match st.node.write(vec![cmd]).await {
        Ok((_, mut r)) => match r.pop() {
            Some(CmdResult::Queued { token, holder }) if holder == Some(token) => return Ok(token),
            Some(CmdResult::Queued { token, .. }) => token,
            Some(CmdResult::Refused(r)) => return Err(ApiError::refused(r, false).into()),
            other => return Err(ApiError::internal(format!("unexpected result {other:?}")).into()),
        },
        Err(Error::NotLeader { .. }) => return Err(forwarded(st, replay, wait).await),
        Err(e) => return Err(ApiError::from(e).into()),
    };
    loop {
        let q = st.node.reader.queue(ns, queue, name).map_err(|e| ApiError::internal(e.to_string()))?;
        if q.holder().is_some_and(|(t, _)| *t == token) {
            return Ok(token);
        }
        if !q.has(token) {
            return Err(ApiError::new(Code::LeaseNotFound, "the lease ended while waiting its turn").into());
        }
        if Instant::now() >= deadline {
            return Err(give_up(st, ns, queue, name, token, q.holder().map(|(t, _)| *t)).await);
        }
        // Lagging behind the feed only means a look at the queue is due. A lock delay ends
        // with an apply too (the ticker's `Expire`), so every change of holder wakes this.
        let _ = tokio::time::timeout_at(deadline, feed.recv()).await;
    }
}

async fn forwarded(st: &AppState, replay: Replay, wait: Duration) -> Blocked {
    match forward::to_leader_within(st, replay, wait).await {
        Ok(r) => Blocked::Forwarded(r),
        Err(e) => Blocked::Failed(e),
    }
}

/// Leaves the queue after the wait ran out. If leaving cannot be confirmed, the place may still
/// be there and may even come to hold: the answer is then an unknown outcome naming the token,
/// so the client can release it (or revoke its lease).
async fn give_up(st: &AppState, ns: &str, queue: Queue, name: &str, token: u64, holder: Option<u64>) -> Blocked {
    let cmd = Command::Dequeue { ns: ns.to_string(), queue, name: name.to_string(), token };
    match st.node.write(vec![cmd]).await {
        Ok(_) => {
            let (code, what) = match queue {
                Queue::Lock => (Code::LockHeld, "the lock stayed held"),
                Queue::Election => (Code::NotElected, "another candidate kept the lead"),
            };
            let by = holder.map_or_else(String::new, |h| format!(" (by token {h})"));
            ApiError::new(code, format!("{what}{by} for the whole wait; this request's place was given up")).into()
        }
        Err(e) => ApiError::unknown_outcome(format!(
            "the wait ran out and leaving the queue failed ({e}): token {token} may still be queued or hold; release it or revoke the lease"
        ))
        .into(),
    }
}

/// Leaves a queue (releases a lock, resigns): 404 when the token is not in it.
pub async fn leave(
    st: &AppState,
    replay: Replay,
    ns: &str,
    queue: Queue,
    name: &str,
    token: u64,
) -> Result<(), Blocked> {
    let cmd = Command::Dequeue { ns: ns.to_string(), queue, name: name.to_string(), token };
    match super::exec::write_one(st, cmd, replay).await? {
        (_, CmdResult::Dequeued { .. }) => Ok(()),
        (_, CmdResult::Refused(Refusal::NotFound)) => {
            Err(ApiError::new(Code::NotFound, format!("token {token} is not queued on `{name}`")).into())
        }
        (_, CmdResult::Refused(r)) => Err(ApiError::refused(r, false).into()),
        (_, other) => Err(ApiError::internal(format!("unexpected result {other:?}")).into()),
    }
}

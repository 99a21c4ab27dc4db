//! Running commands for any API surface (native or dialect): writes go through Raft on the
//! leader and are replayed at the leader from a follower; strong reads pass a ReadIndex
//! barrier or are replayed likewise. Surfaces render results and errors in their own shapes.

use std::time::Duration;

use axum::response::{IntoResponse, Response};

use super::code::Code;
use super::error::{ApiError, Render};
use super::forward::{self, Replay};
use super::state::AppState;
use crate::model::command::{CmdResult, Command};
use crate::node::error::Error;

/// Longest a `minVersion` read waits for this node to catch up.
pub const MIN_VERSION_WAIT: Duration = Duration::from_secs(5);

/// Why a command produced no local result.
pub enum Blocked {
    /// Replayed at the leader; this is the leader's response, to be returned as is.
    Forwarded(Response),
    Failed(ApiError),
}

impl From<ApiError> for Blocked {
    fn from(e: ApiError) -> Self {
        Blocked::Failed(e)
    }
}

impl Blocked {
    /// The leader's response as it is, or the failure in the surface's own shape.
    pub fn render(self, render: Render) -> Response {
        match self {
            Blocked::Forwarded(r) => r,
            Blocked::Failed(e) => render(e),
        }
    }

    /// Replays a request at the leader (this node does not lead).
    async fn forward(st: &AppState, replay: Replay) -> Self {
        match forward::to_leader(st, replay).await {
            Ok(r) => Blocked::Forwarded(r),
            Err(e) => Blocked::Failed(e),
        }
    }
}

/// The native surface renders a blocked command like any of its errors.
impl IntoResponse for Blocked {
    fn into_response(self) -> Response {
        self.render(ApiError::into_response)
    }
}

/// Proposes `cmds` and returns the log index and one result per command.
pub async fn write(st: &AppState, cmds: Vec<Command>, replay: Replay) -> Result<(u64, Vec<CmdResult>), Blocked> {
    let n = cmds.len();
    match st.node.write(cmds).await {
        Ok((i, results)) if results.len() == n => Ok((i, results)),
        Ok(_) => Err(ApiError::from(Error::Storage("result count mismatch".into())).into()),
        Err(Error::NotLeader { .. }) => Err(Blocked::forward(st, replay).await),
        Err(e) => Err(ApiError::from(e).into()),
    }
}

/// Proposes one command and returns its result.
pub async fn write_one(st: &AppState, cmd: Command, replay: Replay) -> Result<(u64, CmdResult), Blocked> {
    let (i, mut results) = write(st, vec![cmd], replay).await?;
    Ok((i, results.remove(0)))
}

/// Whether a read is strong: an explicit `consistency` wins; otherwise strong on the leader
/// and stale on a follower.
pub fn is_strong(st: &AppState, consistency: Option<&str>) -> Result<bool, ApiError> {
    match consistency {
        None => Ok(st.node.is_leader()),
        Some("strong") | Some("linearizable") => Ok(true),
        Some("stale") => Ok(false),
        Some(other) => Err(ApiError::new(Code::InvalidQuery, format!("consistency `{other}` is not strong or stale"))),
    }
}

/// A read whose only query parameter is `consistency`: whether it is strong (see
/// [`is_strong`]).
pub fn consistency_only(
    st: &AppState,
    query: Result<
        axum::extract::Query<std::collections::HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<bool, ApiError> {
    let q = super::parse::query_of(query)?;
    super::parse::known_params(&q, &["consistency"])?;
    is_strong(st, q.get("consistency").map(String::as_str))
}

/// Makes a following local read linearizable when `strong`, and waits for `min_version`.
/// Returns whether the read is linearizable: a *default* read (no `consistency` parameter) on a
/// node that turns out not to lead any more is served locally as stale, like on any follower,
/// rather than proxied, so one node's default reads never jump between its own state and the
/// leader's.
pub async fn before_read(
    st: &AppState,
    strong: bool,
    min_version: Option<u64>,
    replay: Replay,
) -> Result<bool, Blocked> {
    let mut linearizable = strong;
    if strong {
        match st.node.linearizable_barrier().await {
            Ok(()) => {}
            Err(Error::NotLeader { .. }) if !asks_consistency(&replay) => linearizable = false,
            Err(Error::NotLeader { .. }) => return Err(Blocked::forward(st, replay).await),
            Err(e) => return Err(ApiError::from(e).into()),
        }
    }
    if let Some(v) = min_version {
        st.node.wait_applied(v, MIN_VERSION_WAIT).await.map_err(ApiError::from)?;
    }
    Ok(linearizable)
}

fn asks_consistency(replay: &Replay) -> bool {
    super::auth::query_param(&replay.uri, "consistency").is_some()
}

//! `cairn ceiling` (hidden): the machine's ceiling for Cairn's HTTP edge. It serves the routes
//! `cairn bench` drives, `PUT` and `GET /kv/items/{key}` and `GET /cluster/status`, over the
//! node's own connection stack (`server::serve_plain`: the same listener, hyper settings,
//! timeouts and axum) with the same JSON bodies, but with no storage, no Raft and no
//! replication: a PUT parses its body and is acknowledged, a GET answers a fixed value.
//! `scripts/bench-vs-etcd.sh` runs it beside every run, so each Cairn figure can be read as a
//! fraction of what this machine's HTTP path alone allows (docs/performance.md, "The ceiling").

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::config::NodeConfig;
use crate::node::error::StartError;

#[derive(Clone)]
struct Ceiling {
    /// `/cluster/status`'s answer: one node, leader of itself, so `cairn bench` drives it
    /// like a single-node cluster.
    status: Value,
    /// What every GET answers as the stored value.
    value: Value,
}

/// Serves until `shutdown`, with `config`'s address and connection limits (`cairn serve`'s
/// flags); `value_size` bytes of value in every GET answer.
pub async fn run(
    config: NodeConfig,
    value_size: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(StartError::io(format!("listen on {}", config.listen)))?;
    let addr = listener.local_addr().map_err(StartError::io("read the listener's address"))?;
    let state = Ceiling {
        status: json!({"data": {
            "id": 1, "role": "leader", "term": 1, "leader": 1,
            "members": [{"id": 1, "addr": addr.to_string(), "voter": true, "heldData": true}],
            "lastLogIndex": 1, "appliedIndex": 1,
        }}),
        value: Value::String("x".repeat(value_size)),
    };
    let router = Router::new()
        .route("/cluster/status", get(status))
        .route("/kv/items/{key}", get(read).put(write))
        .with_state(state);
    tracing::info!(%addr, "serving the HTTP ceiling: no storage, no replication");
    crate::server::serve_plain(listener, router, &config.connections, shutdown).await;
    Ok(())
}

async fn status(State(c): State<Ceiling>) -> Json<Value> {
    Json(c.status.clone())
}

async fn read(State(c): State<Ceiling>, Path(key): Path<String>) -> Json<Value> {
    Json(json!({"data": {"key": key, "value": c.value, "version": "1", "expiresAt": null}}))
}

/// Parses the body as Cairn's PUT does (a JSON object with a `value`), then acknowledges it.
async fn write(Path(key): Path<String>, body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.get("value").is_some() => {
            Json(json!({"data": {"key": key, "version": "1", "expiresAt": null}})).into_response()
        }
        _ => (StatusCode::BAD_REQUEST, Json(json!({"error": {"code": "invalid_json", "message": "bad body"}})))
            .into_response(),
    }
}

//! `GET /cluster/nodes`: every member as it sees itself, gathered by the node asked.
//!
//! `/cluster/status` is one node's own view, and a browser can reach only the node that served
//! the console (its Content-Security-Policy keeps calls on that origin; peers' addresses may
//! not even be routable from the browser). So this node asks each member, itself included,
//! for its `/health`, `/ready`, `/cluster/status` and request count, in parallel and within a
//! short deadline, and answers with all of them. A member that does not answer is reported
//! down with the reason, never left out.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::auth::Caller;
use super::render::Data;
use super::schema;
use super::state::AppState;
use crate::config::NodeId;

/// How long each member gets to answer. A dead member costs the caller this, once.
const ASK_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeView {
    id: NodeId,
    addr: String,
    voter: bool,
    /// It answered `/health` with 200.
    up: bool,
    /// `ok`, or the error code `/health` answered with.
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ready: Option<bool>,
    /// Why `/ready` said no.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_ready: Option<String>,
    /// Its `/cluster/status` data.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Value>,
    /// The sum of its `cairn_http_requests_total`: two samples give a request rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<u64>,
    /// Why it could not be asked, when `up` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Nodes {
    /// The node that gathered these answers.
    answered_by: NodeId,
    nodes: Vec<NodeView>,
}

/// Needs any valid credential, like `/cluster/status`; the caller's own credential is what
/// this node shows each member.
#[utoipa::path(get, path = "/cluster/nodes", tag = "cluster", operation_id = "clusterNodes",
    summary = "Every member's health, readiness, status and request count, as each reports it",
    responses((status = 200, description = "one entry per member", body = schema::NodesData), schema::Errors))]
pub async fn nodes(State(st): State<AppState>, _caller: Caller, headers: HeaderMap) -> Response {
    let members = st.node.status().members;
    let creds: Vec<_> =
        ["authorization", "x-token"].iter().filter_map(|name| headers.get(*name).map(|v| (*name, v.clone()))).collect();
    let asks = members.into_iter().map(|m| {
        let (st, creds) = (st.clone(), creds.clone());
        async move {
            let base = format!("{}://{}", st.node.config.peer_scheme(), m.addr);
            let get = |path: &str| {
                let mut req = st.forward_http.get(format!("{base}{path}")).timeout(ASK_TIMEOUT);
                for (name, value) in &creds {
                    req = req.header(*name, value.clone());
                }
                req.send()
            };
            let (health, ready, status, metrics) =
                tokio::join!(get("/health"), get("/ready"), get("/cluster/status"), get("/metrics"));
            let mut view = NodeView {
                id: m.id,
                addr: m.addr,
                voter: m.voter,
                up: false,
                health: None,
                ready: None,
                not_ready: None,
                status: None,
                requests: None,
                error: None,
            };
            match health {
                Ok(r) => {
                    view.up = r.status().is_success();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    view.health = Some(match body["error"]["code"].as_str() {
                        Some(code) => code.to_string(),
                        None => "ok".to_string(),
                    });
                }
                Err(e) => view.error = Some(plain(&e)),
            }
            if let Ok(r) = ready {
                let ok = r.status().is_success();
                view.ready = Some(ok);
                if !ok {
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    view.not_ready = body["error"]["message"].as_str().map(str::to_string);
                }
            }
            if let Ok(r) = status.and_then(|r| r.error_for_status()) {
                if let Ok(mut body) = r.json::<Value>().await {
                    view.status = Some(body["data"].take()).filter(|v| !v.is_null());
                }
            }
            if let Ok(r) = metrics.and_then(|r| r.error_for_status()) {
                if let Ok(text) = r.text().await {
                    view.requests = Some(request_total(&text));
                }
            }
            view
        }
    });
    let nodes = futures::future::join_all(asks).await;
    Json(Data { data: Nodes { answered_by: st.node.id, nodes } }).into_response()
}

/// A reqwest error without the URL's credentials (there are none in it) or its noise.
fn plain(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {} ms", ASK_TIMEOUT.as_millis())
    } else if e.is_connect() {
        "connection refused or unreachable".to_string()
    } else {
        e.to_string()
    }
}

/// Sums every `cairn_http_requests_total` sample in a Prometheus text exposition.
fn request_total(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("cairn_http_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_count_sums_every_route_and_status() {
        let text = "# TYPE cairn_http_requests_total counter\n\
                    cairn_http_requests_total{route=\"/health\",status=\"200\"} 3\n\
                    cairn_http_requests_total{route=\"/kv/items/{key}\",status=\"404\"} 4\n\
                    cairn_http_request_duration_seconds_count{route=\"/health\"} 3\n";
        assert_eq!(request_total(text), 7);
        assert_eq!(request_total(""), 0);
    }
}

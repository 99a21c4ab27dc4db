//! What every handler is given: the node and the forwarding client.

use std::sync::Arc;

use crate::node::Node;

#[derive(Clone)]
pub struct AppState {
    pub node: Arc<Node>,
    /// Separate from the Raft RPC client so proxied traffic cannot crowd out heartbeats.
    pub forward_http: reqwest::Client,
}

impl AppState {
    pub fn new(node: Arc<Node>, forward_http: reqwest::Client) -> Self {
        AppState { node, forward_http }
    }
}

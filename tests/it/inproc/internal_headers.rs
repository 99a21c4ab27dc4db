//! Cairn's own request headers are believed only from a peer: a client that sends the
//! forwarding loop guard itself is served as if it had not.

use reqwest::Method;
use serde_json::json;

use crate::support::{deadline_in, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_made_forwarding_header_is_ignored() {
    let mut c = Cluster::in_process(3, &["--cluster-secret", "s3cret"]);
    c.wait_for_leader(deadline_in(20)).await;
    let follower = c.url(c.follower_ids()[0]);
    let spoofed = [("x-cairn-forwarded-by", "9")];
    let body = serde_json::to_vec(&json!({"value": 1})).unwrap();
    let put = c.http.must(Method::PUT, &format!("{follower}/kv/items/k"), Some(body), &spoofed).await;
    assert_eq!(put.status, 200, "the follower must forward the write despite the header: {put:?}");
    let read = c.http.must(Method::GET, &format!("{follower}/kv/items/k?consistency=strong"), None, &spoofed).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.data()["value"], json!(1), "{read:?}");
    // A made-up secret does not make the header believed either.
    let both = [("x-cairn-forwarded-by", "9"), ("x-cairn-cluster-secret", "guess")];
    let read = c.http.must(Method::GET, &format!("{follower}/kv/items/k?consistency=strong"), None, &both).await;
    assert_eq!(read.status, 200, "{read:?}");
}

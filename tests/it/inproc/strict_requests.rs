//! Nothing a client sends is silently dropped: a misspelled or misplaced condition, two
//! conditions that cannot both hold, or a field or parameter a route does not know gets a 400
//! naming it, and the write is not applied.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{deadline_in, Cluster, Resp};

async fn single_node() -> (Cluster, String) {
    let mut cluster = Cluster::in_process_single(&[]);
    cluster.wait_for_leader(deadline_in(15)).await;
    let url = cluster.url(1);
    (cluster, url)
}

async fn send(c: &Cluster, method: Method, url: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Resp {
    c.http.must(method, url, body.map(|b| serde_json::to_vec(&b).unwrap()), headers).await
}

#[track_caller]
fn assert_names(r: &Resp, status: u16, code: &str, named: &str) {
    r.assert_error(status, code);
    assert!(r.text.contains(named), "the error must name `{named}`: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelled_condition_is_refused_and_the_write_not_applied() {
    let (c, url) = single_node().await;
    c.http.put(&url, "k", &json!({"value": "first"})).await.ok();
    // saasignal's spelling on the native route: it used to overwrite unconditionally.
    let r = c.http.put(&url, "k", &json!({"value": "second", "if_not_exists": true})).await;
    assert_names(&r, 400, "unknown_field", "if_not_exists");
    let r = c.http.put(&url, "k", &json!({"value": "second", "ifversion": "1"})).await;
    assert_names(&r, 400, "unknown_field", "ifversion");
    let r = send(&c, Method::PUT, &format!("{url}/kv/items/k?ifVersion=1"), Some(json!({"value": 3})), &[]).await;
    assert_names(&r, 400, "unknown_field", "ifVersion");
    assert_eq!(c.http.get(&url, "k").await.ok().data()["value"], json!("first"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_and_if_none_match_together_are_conflicting_conditions() {
    let (c, url) = single_node().await;
    let v = c.http.put(&url, "k", &json!({"value": "first"})).await.ok().version().to_string();
    let etag = format!("\"{v}\"");
    let both = [("if-match", etag.as_str()), ("if-none-match", "*")];
    let r = send(&c, Method::PUT, &format!("{url}/kv/items/k"), Some(json!({"value": "second"})), &both).await;
    r.assert_error(400, "conflicting_conditions");
    assert_eq!(c.http.get(&url, "k").await.ok().data()["value"], json!("first"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_refuses_conditions_instead_of_ignoring_them() {
    let (c, url) = single_node().await;
    c.http.increment(&url, "n", Some(&json!({"delta": 5}))).await.ok();
    let r = c.http.increment(&url, "n", Some(&json!({"delta": 1, "ifVersion": "1"}))).await;
    assert_names(&r, 400, "unknown_field", "ifVersion");
    let inc = format!("{url}/kv/items/n/increment");
    let r = send(&c, Method::POST, &inc, Some(json!({"delta": 1})), &[("if-match", "\"1\"")]).await;
    r.assert_error(400, "invalid_precondition");
    assert_eq!(c.http.get(&url, "n").await.ok().data()["value"], json!(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_parameters_and_fields_elsewhere_are_refused() {
    let (c, url) = single_node().await;
    c.http.put(&url, "k", &json!({"value": 1})).await.ok();
    // A scan takes minVersion, and checks it as a GET does.
    let r = send(&c, Method::GET, &format!("{url}/kv/items?prefix=k&minVersion=x"), None, &[]).await;
    r.assert_error(400, "invalid_version");
    let r = send(&c, Method::GET, &format!("{url}/kv/items?prefix=k&minVersio=1"), None, &[]).await;
    assert_names(&r, 400, "unknown_field", "minVersio");
    let r = c.http.get_query(&url, "k", "consistancy=strong").await;
    assert_names(&r, 400, "unknown_field", "consistancy");
    // A DELETE's condition goes in the query or If-Match, never in a body it would ignore.
    let r = send(&c, Method::DELETE, &format!("{url}/kv/items/k"), Some(json!({"ifVersion": "1"})), &[]).await;
    r.assert_error(400, "unknown_field");
    assert_eq!(c.http.get(&url, "k").await.ok().data()["value"], json!(1));
    // Batch ops: a field that does not belong to the op's kind, with the op's index.
    let ops = json!({"ops": [
        {"op": "set", "key": "a", "value": 1},
        {"op": "increment", "key": "n", "delta": 1, "ifVersion": "3"}
    ]});
    let r = send(&c, Method::POST, &format!("{url}/kv/batch"), Some(ops), &[]).await;
    assert_names(&r, 400, "unknown_field", "ifVersion");
    assert_eq!(r.body["error"]["index"], json!(1), "{r:?}");
    c.http.get(&url, "a").await.assert_error(404, "not_found");
    let r = send(&c, Method::POST, &format!("{url}/kv/batch"), Some(json!({"ops": [], "atomic": true})), &[]).await;
    assert_names(&r, 400, "unknown_field", "atomic");
    // Admin bodies.
    let token = json!({"namespace": "team", "permissions": ["read"], "expiresIn": 60});
    let r = send(&c, Method::POST, &format!("{url}/admin/tokens"), Some(token), &[]).await;
    assert_names(&r, 400, "unknown_field", "expiresIn");
    let member = json!({"id": 7, "addr": "127.0.0.1:1", "voter": false});
    let r = send(&c, Method::POST, &format!("{url}/cluster/members"), Some(member), &[]).await;
    assert_names(&r, 400, "unknown_field", "voter");
}

//! Item semantics on a single node: response shapes and codes of PUT/GET/DELETE,
//! conditional writes (ifNotExists, ifVersion, ifValue, If-Match, If-None-Match),
//! increment arithmetic, growing versions and the ETag header.

use crate::support::{deadline_in, Cluster, Resp};
use serde_json::{json, Value};

/// A running single-node cluster whose node is leader, and its URL.
async fn single_node() -> (Cluster, String) {
    let mut cluster = Cluster::in_process_single(&[]);
    cluster.wait_for_leader(deadline_in(15)).await;
    let url = cluster.url(1);
    (cluster, url)
}

/// Asserts the item envelope: key, value, decimal-string version, expiresAt null and
/// an `ETag` equal to `"<version>"`.
#[track_caller]
fn assert_item(resp: &Resp, key: &str, value: &Value) {
    assert_eq!(resp.status, 200, "{resp:?}");
    let data = resp.data();
    assert_eq!(data["key"], json!(key), "{resp:?}");
    assert_eq!(&data["value"], value, "{resp:?}");
    assert!(data.get("expiresAt").is_some_and(Value::is_null), "expiresAt must be present and null: {resp:?}");
    let version = resp.version();
    assert_eq!(resp.header("etag"), Some(format!("\"{version}\"").as_str()), "{resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_returns_the_item_with_version_and_etag_and_get_returns_the_same() {
    let (c, url) = single_node().await;
    let value = json!({"name": "cairn", "tags": ["a", "b"], "n": 3, "ok": true, "nothing": null});
    let put = c.http.put(&url, "doc", &json!({"value": value})).await;
    assert_item(&put, "doc", &value);
    let got = c.http.get(&url, "doc").await;
    assert_item(&got, "doc", &value);
    assert_eq!(got.version(), put.version());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_of_a_missing_key_is_404_not_found() {
    let (c, url) = single_node().await;
    c.http.get(&url, "never-written").await.assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_key_and_a_second_delete_is_404_not_found() {
    let (c, url) = single_node().await;
    c.http.put(&url, "gone", &json!({"value": 1})).await.ok();
    let del = c.http.delete(&url, "gone").await.ok();
    assert_eq!(del.data(), &json!({"key": "gone", "deleted": true}), "{del:?}");
    c.http.get(&url, "gone").await.assert_error(404, "not_found");
    c.http.delete(&url, "gone").await.assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_increase_with_every_change() {
    let (c, url) = single_node().await;
    let v1 = c.http.put(&url, "k", &json!({"value": 1})).await.ok().version();
    let v2 = c.http.put(&url, "k", &json!({"value": 2})).await.ok().version();
    let v3 = c.http.put(&url, "other", &json!({"value": 3})).await.ok().version();
    let v4 = c.http.increment(&url, "k", None).await.ok().version();
    assert!(v1 < v2 && v2 < v3 && v3 < v4, "versions must grow: {v1} {v2} {v3} {v4}");
    let got = c.http.get(&url, "k").await.ok();
    assert_eq!(got.version(), v4, "GET reports the last change's version: {got:?}");
    assert_eq!(got.header("etag"), Some(format!("\"{v4}\"").as_str()), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_not_exists_creates_once_then_is_409_key_exists() {
    let (c, url) = single_node().await;
    c.http.put(&url, "once", &json!({"value": "first", "ifNotExists": true})).await.ok();
    c.http.put(&url, "once", &json!({"value": "second", "ifNotExists": true})).await.assert_error(409, "key_exists");
    let got = c.http.get(&url, "once").await.ok();
    assert_eq!(got.data()["value"], "first", "a refused write must not change the value: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_version_matching_succeeds_and_stale_is_409_version_mismatch() {
    let (c, url) = single_node().await;
    let v1 = c.http.put(&url, "cas", &json!({"value": "a"})).await.ok().version();
    let put = c.http.put(&url, "cas", &json!({"value": "b", "ifVersion": v1.to_string()})).await;
    assert_item(&put, "cas", &json!("b"));
    assert!(put.version() > v1);
    c.http
        .put(&url, "cas", &json!({"value": "c", "ifVersion": v1.to_string()}))
        .await
        .assert_error(409, "version_mismatch");
    assert_eq!(c.http.get(&url, "cas").await.ok().data()["value"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_value_matching_succeeds_and_different_is_409_value_mismatch() {
    let (c, url) = single_node().await;
    c.http.put(&url, "cav", &json!({"value": {"state": "idle"}})).await.ok();
    let put = c.http.put(&url, "cav", &json!({"value": {"state": "busy"}, "ifValue": {"state": "idle"}})).await;
    assert_item(&put, "cav", &json!({"state": "busy"}));
    c.http
        .put(&url, "cav", &json!({"value": {"state": "done"}, "ifValue": {"state": "idle"}}))
        .await
        .assert_error(409, "value_mismatch");
    assert_eq!(c.http.get(&url, "cav").await.ok().data()["value"], json!({"state": "busy"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_with_the_current_etag_succeeds_and_otherwise_is_412() {
    let (c, url) = single_node().await;
    let put = c.http.put(&url, "etag", &json!({"value": 1})).await.ok();
    let etag = put.header("etag").expect("PUT carries an ETag").to_string();
    let second = c.http.put_with_headers(&url, "etag", &json!({"value": 2}), &[("if-match", &etag)]).await;
    assert_item(&second, "etag", &json!(2));
    c.http
        .put_with_headers(&url, "etag", &json!({"value": 3}), &[("if-match", &etag)])
        .await
        .assert_error(412, "precondition_failed");
    c.http
        .put_with_headers(&url, "etag-absent", &json!({"value": 1}), &[("if-match", &etag)])
        .await
        .assert_error(412, "precondition_failed");
    assert_eq!(c.http.get(&url, "etag").await.ok().data()["value"], 2);
    c.http.get(&url, "etag-absent").await.assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_star_creates_an_absent_key_and_is_412_on_an_existing_one() {
    let (c, url) = single_node().await;
    let created = c.http.put_with_headers(&url, "inm", &json!({"value": "new"}), &[("if-none-match", "*")]).await;
    assert_item(&created, "inm", &json!("new"));
    c.http
        .put_with_headers(&url, "inm", &json!({"value": "again"}), &[("if-none-match", "*")])
        .await
        .assert_error(412, "precondition_failed");
    assert_eq!(c.http.get(&url, "inm").await.ok().data()["value"], "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_of_a_missing_key_starts_at_zero_and_adds_integer_deltas() {
    let (c, url) = single_node().await;
    let first = c.http.increment(&url, "counter", None).await;
    assert_item(&first, "counter", &json!(1));
    let second = c.http.increment(&url, "counter", Some(&json!({"delta": 5}))).await;
    assert_item(&second, "counter", &json!(6));
    assert!(second.version() > first.version());
    let empty = c.http.increment(&url, "counter", Some(&json!({}))).await;
    assert_item(&empty, "counter", &json!(7));
    assert_eq!(c.http.get(&url, "counter").await.ok().data()["value"], json!(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_by_a_float_delta_gives_a_float() {
    let (c, url) = single_node().await;
    c.http.put(&url, "f", &json!({"value": 1})).await.ok();
    let resp = c.http.increment(&url, "f", Some(&json!({"delta": 0.5}))).await.ok();
    assert_eq!(resp.data()["value"].as_f64(), Some(1.5), "{resp:?}");
    let resp = c.http.increment(&url, "f", Some(&json!({"delta": -2.25}))).await.ok();
    assert_eq!(resp.data()["value"].as_f64(), Some(-0.75), "{resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_of_a_string_is_409_not_a_number() {
    let (c, url) = single_node().await;
    c.http.put(&url, "s", &json!({"value": "seven"})).await.ok();
    c.http.increment(&url, "s", None).await.assert_error(409, "not_a_number");
    assert_eq!(c.http.get(&url, "s").await.ok().data()["value"], "seven");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_past_i64_max_is_409_overflow() {
    let (c, url) = single_node().await;
    c.http.put(&url, "big", &json!({"value": i64::MAX})).await.ok();
    c.http.increment(&url, "big", Some(&json!({"delta": 1}))).await.assert_error(409, "overflow");
    assert_eq!(c.http.get(&url, "big").await.ok().data()["value"], json!(i64::MAX));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_come_back_exactly_as_written_and_increments_stay_exact() {
    let (c, url) = single_node().await;
    // The body is sent as text, so each literal reaches the node exactly as written here. Every
    // digit comes back; only an exponent is spelled canonically (`e+3`), as docs/api.md says.
    let cases = [
        ("big", "12345678901234567890123", "12345678901234567890123"),
        ("negzero", "-0", "-0"),
        ("frac", "2.50", "2.50"),
        ("tiny", "-0.000000000000000000000000001", "-0.000000000000000000000000001"),
        ("exp", "1e3", "1e+3"),
        ("exp2", "1.5E-7", "1.5e-7"),
        ("nested", r#"{"n":[12345678901234567890123,0.10]}"#, r#"{"n":[12345678901234567890123,0.10]}"#),
    ];
    for (key, literal, back) in cases {
        let body = format!(r#"{{"value": {literal}}}"#).into_bytes();
        let put = c.http.put_raw(&url, key, body).await;
        assert_eq!(put.status, 200, "{put:?}");
        let got = c.http.get(&url, key).await;
        assert!(got.text.contains(&format!(r#""value":{back}"#)), "{literal} must come back as {back}: {got:?}");
    }
    // Past the i64 range an increment is refused, never turned into a float.
    c.http.put_raw(&url, "u64max", br#"{"value": 18446744073709551615}"#.to_vec()).await.ok();
    c.http.increment(&url, "u64max", Some(&json!({"delta": 1}))).await.assert_error(409, "out_of_range");
    let got = c.http.get(&url, "u64max").await;
    assert!(got.text.contains(r#""value":18446744073709551615"#), "{got:?}");
    // An integer delta that does not fit is refused at the edge.
    let inc = format!("{url}/kv/items/n/increment");
    let r = c.http.must(reqwest::Method::POST, &inc, Some(br#"{"delta": 18446744073709551616}"#.to_vec()), &[]).await;
    r.assert_error(400, "invalid_delta");
    // Inside the range, integers stay integers up to the last one.
    c.http.put_raw(&url, "edge", br#"{"value": 9223372036854775806}"#.to_vec()).await.ok();
    let r = c.http.increment(&url, "edge", Some(&json!({"delta": 1}))).await.ok();
    assert!(r.text.contains(r#""value":9223372036854775807"#), "{r:?}");
    c.http.increment(&url, "edge", Some(&json!({"delta": 1}))).await.assert_error(409, "overflow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_version_condition_names_the_current_version() {
    let (c, url) = single_node().await;
    let first = c.http.put(&url, "cas", &json!({"value": 1})).await.ok().version();
    let current = c.http.put(&url, "cas", &json!({"value": 2})).await.ok().version();
    let stale = json!({"value": 3, "ifVersion": first.to_string()});
    let r = c.http.put(&url, "cas", &stale).await;
    r.assert_error(409, "version_mismatch");
    assert_eq!(r.body["error"]["currentVersion"], json!(current.to_string()), "{r:?}");
    // The same through If-Match, which answers 412.
    let etag = format!("\"{first}\"");
    let r = c.http.put_with_headers(&url, "cas", &json!({"value": 3}), &[("if-match", &etag)]).await;
    r.assert_error(412, "precondition_failed");
    assert_eq!(r.body["error"]["currentVersion"], json!(current.to_string()), "{r:?}");
    // In a batch, beside the op's index.
    let ops = json!({"ops": [{"op": "set", "key": "x", "value": 1}, {"op": "delete", "key": "cas", "ifVersion": first.to_string()}]});
    let r = c
        .http
        .must(reqwest::Method::POST, &format!("{url}/kv/batch"), Some(serde_json::to_vec(&ops).unwrap()), &[])
        .await;
    r.assert_error(409, "version_mismatch");
    assert_eq!(
        (&r.body["error"]["index"], &r.body["error"]["currentVersion"]),
        (&json!(1), &json!(current.to_string()))
    );
    // An absent key has no version to name; other refusals name none either.
    let r = c.http.put(&url, "absent", &json!({"value": 1, "ifVersion": "5"})).await;
    r.assert_error(409, "version_mismatch");
    assert!(r.body["error"].get("currentVersion").is_none(), "{r:?}");
    let r = c.http.put(&url, "cas", &json!({"value": 1, "ifNotExists": true})).await;
    r.assert_error(409, "key_exists");
    assert!(r.body["error"].get("currentVersion").is_none(), "{r:?}");
    assert_eq!(c.http.get(&url, "cas").await.ok().data()["value"], json!(2));
}

//! What a write answer may tell a token without `read`: nothing of the stored state. A plain
//! set or delete needs `write`; a condition (its refusal reveals the stored value, version or
//! existence) or an increment (its answer is the stored value plus the delta) needs `read` too.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{deadline_in, Cluster, Resp};

const ADMIN: &str = "perm-admin";

async fn send(c: &Cluster, method: Method, url: &str, body: Option<Value>, token: &str) -> Resp {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    c.http.must(method, url, body, &[("x-token", token)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_only_token_learns_nothing_of_stored_values() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let admin = format!("Bearer {ADMIN}");
    let body = serde_json::to_vec(&json!({"namespace": "team", "permissions": ["write"]})).unwrap();
    let r = c.http.must(Method::POST, &format!("{url}/admin/tokens"), Some(body), &[("authorization", &admin)]).await;
    let writer = r.data()["token"].as_str().unwrap().to_string();
    let item = format!("{url}/kv/items/secret");

    // Plain writes work.
    send(&c, Method::PUT, &item, Some(json!({"value": 41})), &writer).await.ok();
    // An increment would answer 41 + 0: refused without `read`, and so is a guessing ifValue.
    send(&c, Method::POST, &format!("{item}/increment"), Some(json!({"delta": 0})), &writer)
        .await
        .assert_error(403, "forbidden");
    send(&c, Method::PUT, &item, Some(json!({"value": 1, "ifValue": 41})), &writer)
        .await
        .assert_error(403, "forbidden");
    send(&c, Method::PUT, &item, Some(json!({"value": 1, "ifNotExists": true})), &writer)
        .await
        .assert_error(403, "forbidden");
    send(&c, Method::DELETE, &format!("{item}?ifVersion=1"), None, &writer).await.assert_error(403, "forbidden");
    // The same in a batch, and through saasignal.
    let ops = json!({"ops": [{"op": "increment", "key": "secret", "delta": 0}]});
    send(&c, Method::POST, &format!("{url}/kv/batch"), Some(ops), &writer).await.assert_error(403, "forbidden");
    let ops = json!({"ops": [{"op": "set", "key": "secret", "value": 2, "ifValue": 41}]});
    send(&c, Method::POST, &format!("{url}/kv/batch"), Some(ops), &writer).await.assert_error(403, "forbidden");
    let r =
        send(&c, Method::POST, &format!("{url}/infra/kv/secret/increment"), Some(json!({"delta": 0})), &writer).await;
    assert_eq!(r.status, 403, "{r:?}");
    // None of the refused writes changed anything.
    let read =
        c.http.must(Method::GET, &item, None, &[("authorization", &admin), ("x-cairn-namespace", "team")]).await.ok();
    assert_eq!(read.data()["value"], json!(41));
    // A plain set and a plain delete still work without `read`.
    send(&c, Method::PUT, &item, Some(json!({"value": 7})), &writer).await.ok();
    send(&c, Method::DELETE, &item, None, &writer).await.ok();
}

//! Malformed requests to every dialect get a 4xx in that dialect's own error style, never a
//! 5xx: undecodable paths (query strings decode lossily, so `%FF` there is just U+FFFD and
//! fails only where it is not a valid value), oversized bodies (rejected before any handler runs),
//! bodies of the wrong shape, deep JSON, broken forms.

use crate::support::raw::Raw;
use crate::support::{deadline_in, Cluster, Resp};
use reqwest::Method;

#[derive(Clone, Copy)]
enum Style {
    /// saasignal: `{"code": "bad_request", "message"}`.
    Json,
    /// KVdb and echovalue: text/plain.
    Text,
}

#[track_caller]
fn assert_bad(r: &Resp, style: Style, what: &str) {
    assert_eq!(r.status, 400, "{what}: {r:?}");
    match style {
        Style::Json => {
            assert_eq!(r.body["code"], "bad_request", "{what}: {r:?}");
            assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {r:?}");
        }
        Style::Text => {
            assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "{what}: {r:?}");
            assert!(!r.text.trim().is_empty(), "{what}: {r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_in_the_dialects_style() {
    let mut c = Cluster::in_process_single(&[]);
    c.wait_for_leader(deadline_in(15)).await;
    let base = c.url(1);
    // A fresh client per request: a body over the limit is refused before it has all been
    // read, and the server then closes that connection.
    let send = async |m: Method, path: &str, body: Option<&[u8]>| {
        Raw::new().send(m, &format!("{base}{path}"), body, &[]).await
    };
    let bucket = send(Method::POST, "/kvdb", Some(b"")).await.ok().text;
    // A policy can only change with the bucket's secret key, which is checked first.
    let guarded = send(Method::POST, "/kvdb", Some(b"secret_key=s")).await.ok().text;
    let huge = vec![b'x'; 4 << 20];
    let deep = format!("{{\"value\":{}1{}}}", "[".repeat(200), "]".repeat(200));

    let cases: Vec<(Style, Method, String, Option<&[u8]>)> = vec![
        (Style::Json, Method::PUT, "/infra/kv/%FF".into(), Some(br#"{"value":1}"#)),
        (Style::Json, Method::GET, "/infra/kv?limit=%FF".into(), None),
        (Style::Json, Method::PUT, "/infra/kv/k".into(), Some(&huge)),
        (Style::Json, Method::PUT, "/infra/kv/k".into(), Some(b"[1,2]")),
        (Style::Json, Method::PUT, "/infra/kv/k".into(), Some(deep.as_bytes())),
        (Style::Json, Method::POST, "/infra/kv".into(), Some(b"")),
        (Style::Json, Method::POST, "/infra/kv/k/increment".into(), Some(b"{\"delta\":")),
        (Style::Text, Method::POST, "/echovalue/kv/%FF/k".into(), Some(b"v")),
        (Style::Text, Method::POST, "/echovalue/kv/g/k".into(), Some(&huge)),
        (Style::Text, Method::POST, "/echovalue/kv/g/k?ttl=%FF".into(), Some(b"v")),
        (Style::Text, Method::GET, format!("/kvdb/{bucket}/%FF"), None),
        (Style::Text, Method::GET, "/kvdb/%FF/".into(), None),
        (Style::Text, Method::PUT, format!("/kvdb/{bucket}/k"), Some(&huge)),
        (Style::Text, Method::GET, format!("/kvdb/{bucket}/?limit=%FF"), None),
        (Style::Text, Method::POST, "/kvdb".into(), Some(b"secret_key=%zz")),
        (Style::Text, Method::POST, "/kvdb".into(), Some(b"secret_key=%FF")),
        (Style::Text, Method::PATCH, format!("/kvdb/{guarded}?key=s"), Some(b"default_ttl=-1")),
        (Style::Text, Method::PATCH, format!("/kvdb/{bucket}/n"), Some(b"+1+1")),
    ];
    for (style, method, path, body) in cases {
        let what = format!("{method} {path}");
        assert_bad(&send(method, &path, body).await, style, &what);
    }

    // Unknown bucket ids of any shape are simply not found.
    let long_id = "b".repeat(300);
    for id in [long_id.as_str(), "with.dot", "x"] {
        assert_eq!(send(Method::GET, &format!("/kvdb/{id}/k"), None).await.status, 404, "{id}");
    }
    c.assert_running();
}

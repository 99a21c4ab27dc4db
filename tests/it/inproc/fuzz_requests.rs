//! A property over request parsing: whatever a client sends to any route (generated methods,
//! paths with odd segments, query strings, headers and bodies, JSON or not), the node answers
//! with something other than a 5xx, and keeps serving. `cargo test` runs a short pass
//! (`CAIRN_FUZZ_CASES`, 300 by default); `scripts/fuzz.sh` runs a long one.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;

use crate::support::raw::Raw;
use crate::support::{deadline_in, Cluster};

/// One generated request.
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("k".to_string()),
        Just("%2E%2E".to_string()),
        Just("%FF%FE".to_string()),
        Just("a%2Fb".to_string()),
        Just("%00".to_string()),
        "[a-zA-Z0-9:_.~-]{1,12}",
        "[a-z%0-9]{0,20}",
        Just("x".repeat(600)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let routes = prop_oneof![
        Just("/kv/items/{s}".to_string()),
        Just("/kv/items/{s}/increment".to_string()),
        Just("/kv/items".to_string()),
        Just("/kv/batch".to_string()),
        Just("/admin/tokens".to_string()),
        Just("/admin/tokens/{s}".to_string()),
        Just("/cluster/members".to_string()),
        Just("/cluster/members/{s}".to_string()),
        Just("/infra/kv/{s}".to_string()),
        Just("/infra/kv/{s}/increment".to_string()),
        Just("/infra/kv".to_string()),
        Just("/echovalue/kv/{s}/{s}".to_string()),
        Just("/kvdb".to_string()),
        Just("/kvdb/{s}".to_string()),
        Just("/kvdb/{s}/{s}".to_string()),
        Just("/raft/vote".to_string()),
        Just("/{s}".to_string()),
    ];
    let query = proptest::collection::vec(
        (
            prop_oneof![
                Just("prefix"),
                Just("cursor"),
                Just("limit"),
                Just("values"),
                Just("consistency"),
                Just("minVersion"),
                Just("ifVersion"),
                Just("ttl"),
                Just("format"),
                Just("key"),
                Just("zz"),
            ],
            "[a-zA-Z0-9%=+-]{0,10}",
        ),
        0..3,
    );
    (routes, segment(), segment(), query).prop_map(|(route, a, b, q)| {
        let path = route.replacen("{s}", &a, 1).replacen("{s}", &b, 1);
        let q: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if q.is_empty() {
            path
        } else {
            format!("{path}?{}", q.join("&"))
        }
    })
}

/// JSON values, including the numbers and nestings that once surprised parsers.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-0".to_string()),
        Just("1e308".to_string()),
        Just("1e999".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
        "[a-z\\\\\"]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("value"),
                        Just("ttlSeconds"),
                        Just("ifNotExists"),
                        Just("ifVersion"),
                        Just("ifValue"),
                        Just("delta"),
                        Just("op"),
                        Just("key"),
                        Just("ops"),
                        Just("namespace"),
                        Just("permissions"),
                        Just("id"),
                        Just("addr"),
                        Just("ttl"),
                        Just("if_not_exists"),
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| {
                let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

fn body() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        json_value().prop_map(|j| Some(j.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        Just(Some(b"secret_key=%zz&default_ttl=-1".to_vec())),
        Just(Some(br#"{"value":"#.to_vec())),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let one = prop_oneof![
        "[0-9\"*, W/]{0,8}".prop_map(|v| ("if-match".to_string(), v)),
        "[0-9\"*]{0,4}".prop_map(|v| ("if-none-match".to_string(), v)),
        "[a-z/+*;=.-]{0,24}".prop_map(|v| ("content-type".to_string(), v)),
        "[a-z/*;=.0-9-]{0,24}".prop_map(|v| ("accept".to_string(), v)),
        "[A-Za-z0-9_ :=+/]{0,40}".prop_map(|v| ("authorization".to_string(), v)),
        "[A-Za-z0-9_.-]{0,70}".prop_map(|v| ("x-cairn-namespace".to_string(), v)),
        "[0-9]{0,3}".prop_map(|v| ("x-cairn-forwarded-by".to_string(), v)),
    ];
    proptest::collection::vec(one, 0..3)
}

fn request() -> impl Strategy<Value = Req> {
    let method = prop_oneof![
        Just(Method::GET),
        Just(Method::PUT),
        Just(Method::POST),
        Just(Method::DELETE),
        Just(Method::PATCH),
        Just(Method::HEAD),
        Just(Method::OPTIONS),
    ];
    (method, path(), headers(), body()).prop_map(|(method, path, headers, body)| Req { method, path, headers, body })
}

#[test]
fn no_request_gets_a_5xx_or_stops_the_node() {
    let cases = std::env::var("CAIRN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut c = Cluster::in_process_single(&["--rate-limit", "0"]);
    rt.block_on(c.wait_for_leader(deadline_in(15)));
    let base = c.url(1);
    let raw = Raw::new();
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&request(), |req| {
        let url = format!("{base}{}", req.path);
        let headers: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let sent = rt.block_on(raw.try_send(req.method.clone(), &url, req.body.as_deref(), &headers));
        match sent {
            // A request reqwest itself refuses to build (an invalid header value) never left.
            Err(e) if e.contains("builder error") => Ok(()),
            Err(e) => Err(TestCaseError::fail(format!("no answer: {e}"))),
            Ok(resp) if resp.status >= 500 => Err(TestCaseError::fail(format!("{resp:?}"))),
            Ok(_) => Ok(()),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    c.assert_running();
    let health = rt.block_on(raw.send(Method::GET, &format!("{base}/health"), None, &[]));
    assert_eq!(health.status, 200, "the node stopped serving: {health:?}");
}

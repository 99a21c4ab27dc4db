//! The native data API beyond single keys: scans with cursors, atomic batches, namespaces and
//! access tokens (every credential style, 401/403), the key quota and the cluster secret.

use crate::support::{deadline_in, Cluster, Http, Resp};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token";

async fn single(extra: &[&str]) -> (Cluster, String) {
    let mut c = Cluster::in_process_single(extra);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    (c, url)
}

async fn call(http: &Http, method: Method, url: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Resp {
    http.must(method, url, body.map(|b| serde_json::to_vec(&b).unwrap()), headers).await
}

fn keys_of(resp: &Resp) -> Vec<String> {
    resp.data()["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_pages_through_a_prefix_in_key_order_with_opaque_cursors() {
    let (c, url) = single(&[]).await;
    for k in ["user:3", "user:1", "user:2", "other", "user:4"] {
        c.http.put(&url, k, &json!({"value": k})).await.ok();
    }
    c.http.put(&url, "user:0", &json!({"value": 0, "ttlSeconds": 1})).await.ok();

    let first = call(&c.http, Method::GET, &format!("{url}/kv/items?prefix=user:&limit=2"), None, &[]).await.ok();
    assert_eq!(keys_of(&first), vec!["user:0", "user:1"], "{first:?}");
    assert!(first.data()["items"][0].get("value").is_none(), "values are off by default: {first:?}");
    let cursor = first.data()["nextCursor"].as_str().expect("more pages").to_string();
    let rest = call(
        &c.http,
        Method::GET,
        &format!("{url}/kv/items?prefix=user:&limit=10&values=true&cursor={cursor}"),
        None,
        &[],
    )
    .await
    .ok();
    assert_eq!(keys_of(&rest), vec!["user:2", "user:3", "user:4"], "{rest:?}");
    assert_eq!(rest.data()["items"][0]["value"], json!("user:2"));
    assert!(rest.data()["nextCursor"].is_null(), "{rest:?}");

    // The 1 s key disappears from scans once expired.
    crate::support::until(deadline_in(10), "the expired key to leave the scan", async || {
        let r = c.http.send(Method::GET, &format!("{url}/kv/items?prefix=user:0"), None, &[]).await?;
        if keys_of(&r).is_empty() {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;

    call(&c.http, Method::GET, &format!("{url}/kv/items?limit=0"), None, &[]).await.assert_error(400, "invalid_limit");
    call(&c.http, Method::GET, &format!("{url}/kv/items?limit=1001"), None, &[])
        .await
        .assert_error(400, "invalid_limit");
    call(&c.http, Method::GET, &format!("{url}/kv/items?cursor=%25%25"), None, &[])
        .await
        .assert_error(400, "invalid_cursor");
    // A cursor belongs to its scan: one from the `user:` scan cannot continue a scan of
    // `other`, and a made-up one that decodes to no valid key (a control character) is refused.
    call(&c.http, Method::GET, &format!("{url}/kv/items?prefix=other&cursor={cursor}"), None, &[])
        .await
        .assert_error(400, "invalid_cursor");
    let made_up = b64url("\u{1}kvdb/x");
    call(&c.http, Method::GET, &format!("{url}/kv/items?cursor={made_up}"), None, &[])
        .await
        .assert_error(400, "invalid_cursor");
}

/// Cursors are base64url without padding of the last key returned (docs/api.md).
fn b64url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_applies_all_ops_or_none() {
    let (c, url) = single(&[]).await;
    let batch = format!("{url}/kv/batch");
    let ok = call(
        &c.http,
        Method::POST,
        &batch,
        Some(json!({"ops": [
            {"op": "set", "key": "a", "value": {"n": 1}},
            {"op": "increment", "key": "hits", "delta": 2},
            {"op": "get", "key": "a"},
            {"op": "delete", "key": "missing"},
            {"op": "get", "key": "missing"}
        ]})),
        &[],
    )
    .await
    .ok();
    let results = ok.data()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5, "{ok:?}");
    assert_eq!(results[0]["value"], json!({"n": 1}));
    assert_eq!(results[1]["value"], json!(2));
    assert_eq!(results[2]["value"], json!({"n": 1}), "a get sees the batch's earlier write");
    assert_eq!(results[3], json!({"key": "missing", "deleted": false}));
    assert_eq!(results[4], json!({"key": "missing", "found": false}));
    assert_eq!(results[0]["version"], results[1]["version"], "one Raft entry, one version");

    // The second op fails its condition: the first op must not be applied.
    let failed = call(
        &c.http,
        Method::POST,
        &batch,
        Some(json!({"ops": [
            {"op": "set", "key": "fresh", "value": 1},
            {"op": "set", "key": "a", "value": 2, "ifNotExists": true},
            {"op": "increment", "key": "hits"}
        ]})),
        &[],
    )
    .await;
    failed.assert_error(409, "key_exists");
    assert_eq!(failed.body["error"]["index"], json!(1), "{failed:?}");
    assert_eq!(c.http.get(&url, "fresh").await.status, 404, "nothing of a failed batch is applied");
    assert_eq!(c.http.get(&url, "hits").await.ok().data()["value"], json!(2));
    assert_eq!(c.http.get(&url, "a").await.ok().data()["value"], json!({"n": 1}));

    let too_many: Vec<Value> = (0..101).map(|i| json!({"op": "get", "key": format!("k{i}")})).collect();
    call(&c.http, Method::POST, &batch, Some(json!({"ops": too_many})), &[]).await.assert_error(400, "invalid_batch");
    call(&c.http, Method::POST, &batch, Some(json!({"ops": []})), &[]).await.assert_error(400, "invalid_batch");
    let bad = call(
        &c.http,
        Method::POST,
        &batch,
        Some(json!({"ops": [{"op": "get", "key": "ok"}, {"op": "nope", "key": "x"}]})),
        &[],
    )
    .await;
    bad.assert_error(400, "invalid_op");
    assert_eq!(bad.body["error"]["index"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_confine_callers_to_their_namespace_and_permissions() {
    let (c, url) = single(&["--admin-token", ADMIN]).await;
    let admin_auth = format!("Bearer {ADMIN}");
    let admin = [("authorization", admin_auth.as_str())];

    // No credentials, or a wrong one: 401. Health stays open for probes.
    c.http.get(&url, "k").await.assert_error(401, "unauthorized");
    call(&c.http, Method::GET, &format!("{url}/cluster/status"), None, &[]).await.assert_error(401, "unauthorized");
    call(&c.http, Method::GET, &format!("{url}/kv/items/k"), None, &[("authorization", "Bearer cairn_00_nope")])
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(call(&c.http, Method::GET, &format!("{url}/health"), None, &[]).await.status, 200);

    let created = call(
        &c.http,
        Method::POST,
        &format!("{url}/admin/tokens"),
        Some(json!({"namespace": "team", "permissions": ["read", "write"]})),
        &admin,
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let token = created.data()["token"].as_str().unwrap().to_string();
    let id = created.data()["id"].as_str().unwrap().to_string();
    let reader = call(
        &c.http,
        Method::POST,
        &format!("{url}/admin/tokens"),
        Some(json!({"namespace": "team", "permissions": ["read"]})),
        &admin,
    )
    .await;
    let read_only = reader.data()["token"].as_str().unwrap().to_string();

    // Every credential style the seed services use works.
    let bearer = format!("Bearer {token}");
    let put = call(
        &c.http,
        Method::PUT,
        &format!("{url}/kv/items/k"),
        Some(json!({"value": "team"})),
        &[("authorization", &bearer)],
    )
    .await;
    put.ok();
    let x = call(&c.http, Method::GET, &format!("{url}/kv/items/k"), None, &[("x-token", &token)]).await.ok();
    assert_eq!(x.data()["value"], json!("team"));
    call(&c.http, Method::GET, &format!("{url}/kv/items/k?key={token}"), None, &[]).await.ok();
    let basic = format!("Basic {}", base64_encode(&format!("{token}:")));
    call(&c.http, Method::GET, &format!("{url}/kv/items/k"), None, &[("authorization", &basic)]).await.ok();

    // Namespaces never see each other's keys.
    let in_default = call(&c.http, Method::GET, &format!("{url}/kv/items/k"), None, &admin).await;
    in_default.assert_error(404, "not_found");
    let in_team =
        call(&c.http, Method::GET, &format!("{url}/kv/items/k"), None, &[admin[0], ("x-cairn-namespace", "team")])
            .await;
    assert_eq!(in_team.ok().data()["value"], json!("team"));
    call(
        &c.http,
        Method::GET,
        &format!("{url}/kv/items/k"),
        None,
        &[("x-token", &token), ("x-cairn-namespace", "default")],
    )
    .await
    .assert_error(403, "forbidden");

    // A read-only token cannot write, and a data token cannot manage tokens.
    call(&c.http, Method::PUT, &format!("{url}/kv/items/k"), Some(json!({"value": 1})), &[("x-token", &read_only)])
        .await
        .assert_error(403, "forbidden");
    call(
        &c.http,
        Method::POST,
        &format!("{url}/kv/batch"),
        Some(json!({"ops": [{"op": "set", "key": "k", "value": 1}]})),
        &[("x-token", &read_only)],
    )
    .await
    .assert_error(403, "forbidden");
    call(
        &c.http,
        Method::POST,
        &format!("{url}/admin/tokens"),
        Some(json!({"namespace": "team", "permissions": ["admin"]})),
        &[("x-token", &token)],
    )
    .await
    .assert_error(403, "forbidden");
    call(&c.http, Method::GET, &format!("{url}/admin/tokens"), None, &[("x-token", &token)])
        .await
        .assert_error(403, "forbidden");

    // Listing never shows secrets; revoking makes the token unknown.
    let list = call(&c.http, Method::GET, &format!("{url}/admin/tokens"), None, &admin).await.ok();
    assert!(!list.text.contains(token.rsplit('_').next().unwrap()), "a secret leaked: {list:?}");
    assert_eq!(list.data()["tokens"].as_array().unwrap().len(), 2, "{list:?}");
    call(&c.http, Method::DELETE, &format!("{url}/admin/tokens/{id}"), None, &admin).await.ok();
    call(&c.http, Method::GET, &format!("{url}/kv/items/k"), None, &[("x-token", &token)])
        .await
        .assert_error(401, "unauthorized");
    call(&c.http, Method::DELETE, &format!("{url}/admin/tokens/{id}"), None, &admin)
        .await
        .assert_error(404, "not_found");

    // Revoking another namespace's token is answered exactly like an id that does not exist,
    // so ids cannot be probed for; a token may revoke itself without the admin permission.
    let mint = async |ns: &str, perms: Value| {
        let r = call(
            &c.http,
            Method::POST,
            &format!("{url}/admin/tokens"),
            Some(json!({"namespace": ns, "permissions": perms})),
            &admin,
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        (r.data()["id"].as_str().unwrap().to_string(), r.data()["token"].as_str().unwrap().to_string())
    };
    let (_, other_admin) = mint("other", json!(["admin"])).await;
    let (team_id, team_token) = mint("team", json!(["read"])).await;
    let other = [("x-token", other_admin.as_str())];
    let foreign = call(&c.http, Method::DELETE, &format!("{url}/admin/tokens/{team_id}"), None, &other).await;
    let unknown = call(&c.http, Method::DELETE, &format!("{url}/admin/tokens/0123456789abcdef"), None, &other).await;
    foreign.assert_error(404, "not_found");
    unknown.assert_error(404, "not_found");
    assert_eq!(foreign.text, unknown.text, "a foreign id and an unknown id must be told apart by nothing");
    let own = [("x-token", team_token.as_str())];
    call(&c.http, Method::DELETE, &format!("{url}/admin/tokens/{team_id}"), None, &own).await.ok();
    call(&c.http, Method::GET, &format!("{url}/kv/items/k"), None, &own).await.assert_error(401, "unauthorized");
    call(
        &c.http,
        Method::POST,
        &format!("{url}/admin/tokens"),
        Some(json!({"namespace": "bad/ns", "permissions": ["read"]})),
        &admin,
    )
    .await
    .assert_error(400, "invalid_namespace");
    call(
        &c.http,
        Method::POST,
        &format!("{url}/admin/tokens"),
        Some(json!({"namespace": "ok", "permissions": ["root"]})),
        &admin,
    )
    .await
    .assert_error(400, "invalid_permissions");
}

fn base64_encode(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_key_quota_refuses_new_keys_but_allows_updates() {
    let (c, url) = single(&["--max-keys-per-namespace", "2", "--max-value-bytes", "64"]).await;
    c.http.put(&url, "a", &json!({"value": 1})).await.ok();
    c.http.put(&url, "b", &json!({"value": 1})).await.ok();
    c.http.put(&url, "c", &json!({"value": 1})).await.assert_error(403, "quota_exceeded");
    c.http.increment(&url, "c", None).await.assert_error(403, "quota_exceeded");
    c.http.put(&url, "a", &json!({"value": 2})).await.ok();
    c.http.delete(&url, "b").await.ok();
    c.http.put(&url, "c", &json!({"value": 1})).await.ok();
    c.http.put(&url, "a", &json!({"value": "x".repeat(100)})).await.assert_error(413, "value_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_rpcs_need_the_cluster_secret_when_one_is_set() {
    let mut c = Cluster::in_process(3, &["--cluster-secret", "s3cret"]);
    c.wait_for_leader(deadline_in(20)).await;
    let url = c.url(1);
    let r = call(&c.http, Method::POST, &format!("{url}/raft/vote"), Some(json!({})), &[]).await;
    r.assert_error(401, "unauthorized");
    // The cluster itself, which sends the secret, still replicates.
    c.http.put(&c.leader_url(), "k", &json!({"value": 1})).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ttl_applies_to_writes_without_one() {
    let (c, url) = single(&["--default-ttl-seconds", "60"]).await;
    let r = c.http.put(&url, "k", &json!({"value": 1})).await.ok();
    assert!(r.data()["expiresAt"].is_string(), "{r:?}");
    let r = c.http.put(&url, "k2", &json!({"value": 1, "ttlSeconds": 5})).await.ok();
    assert!(r.data()["expiresAt"].is_string(), "{r:?}");
}

#[test]
fn an_in_process_node_gets_the_binarys_refusals() {
    // The flags the binary refuses (`process::startup`) are refused by the library itself,
    // before any data is touched.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args: Vec<String> =
        ["--listen", "0.0.0.0:0", "--data-dir", data.to_str().unwrap()].iter().map(|s| s.to_string()).collect();
    let err = crate::support::node_config(&args).unwrap_err();
    assert!(err.contains("--admin-token"), "{err}");
    // An embedding program that builds its own config is checked by the server as well.
    let mut ok_args = args.clone();
    ok_args.extend(["--admin-token".to_string(), "t".to_string(), "--cluster-secret".to_string(), "s".to_string()]);
    let mut config = crate::support::node_config(&ok_args).expect("a secured node is accepted");
    config.security.admin_token = None;
    config.security.allow_anonymous = true;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = rt.block_on(cairn::server::run(config, async {})).unwrap_err().to_string();
    assert!(err.contains("--admin-token"), "{err}");
    assert!(!data.exists(), "the refused node touched its data dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after_and_headers() {
    let (c, url) = single(&["--rate-limit", "1"]).await;
    let item = format!("{url}/kv/items/k");
    // Five requests at once against a bucket of one: however slow the machine, at least one
    // of them cannot have a token.
    let sends = (0..5).map(|_| c.http.must(Method::GET, &item, None, &[]));
    let answers = futures::future::join_all(sends).await;
    let limited: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    assert!(!limited.is_empty(), "no request was limited: {answers:?}");
    let r = limited[0];
    r.assert_error(429, "rate_limited");
    assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)), "{r:?}");
    assert_eq!(r.header("x-ratelimit-limit"), Some("1"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(answers.iter().all(|a| a.header("x-ratelimit-reset").is_some()), "{answers:?}");
    // Probes are never limited.
    for _ in 0..3 {
        assert_eq!(c.http.must(Method::GET, &format!("{url}/health"), None, &[]).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token() {
    let (c, url) = single(&["--admin-token", ADMIN, "--metrics-token", "scrape-me"]).await;
    let metrics = format!("{url}/metrics");
    call(&c.http, Method::GET, &metrics, None, &[]).await.assert_error(401, "unauthorized");
    call(&c.http, Method::GET, &metrics, None, &[("authorization", "Bearer wrong")])
        .await
        .assert_error(401, "unauthorized");
    for token in ["scrape-me", ADMIN] {
        let r = call(&c.http, Method::GET, &metrics, None, &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.text.contains("cairn_disk_bytes{part=\"wal\"}"), "{r:?}");
    }
    // The probes stay open.
    assert_eq!(call(&c.http, Method::GET, &format!("{url}/health"), None, &[]).await.status, 200);
    // Without the flag, /metrics is open as before.
    let (open, open_url) = single(&[]).await;
    assert_eq!(call(&open.http, Method::GET, &format!("{open_url}/metrics"), None, &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_page_of_large_values_stops_at_its_byte_budget_and_its_cursor_continues() {
    let (c, url) = single(&[]).await;
    // Ten values of about 900 KB: one page of all ten would be about 9 MB.
    let big = "v".repeat(900_000);
    for i in 0..10 {
        c.http.put(&url, &format!("big:{i}"), &json!({"value": big})).await.ok();
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = call(
            &c.http,
            Method::GET,
            &format!("{url}/kv/items?prefix=big:&limit=10&values=true&cursor={cursor}"),
            None,
            &[],
        )
        .await
        .ok();
        pages += 1;
        assert!(page.text.len() < 5 << 20, "a page of {} bytes passed the 4 MiB budget", page.text.len());
        seen.extend(keys_of(&page));
        match page.data()["nextCursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
        assert!(pages < 20, "the cursors never ended");
    }
    let want: Vec<String> = (0..10).map(|i| format!("big:{i}")).collect();
    assert_eq!(seen, want, "every key exactly once, in order");
    assert!(pages >= 3, "ten 900 KB values fit in {pages} pages of at most 4 MiB");
}

//! echovalue (seed 004) at `/echovalue/kv/{group}/{key}`: the seed's three curl examples
//! (store, store with a 30 s TTL, read, delete) on a real three-node cluster with `x-token`,
//! then its limits (names 30 characters, values 1000, `ttl` 1 s–30 d) and plain-text bodies,
//! and that a query parameter a route does not take is refused, never ignored.

use crate::support::raw::{mint_token, query_escape, until_token_known, Raw};
use crate::support::{deadline_in, parse_rfc3339_utc, unix_now, Cluster, Resp};
use reqwest::Method;

const ADMIN: &str = "echovalue-admin";

struct Client {
    raw: Raw,
    base: String,
    token: String,
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}/echovalue/kv/{path}", self.base)
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        if self.token.is_empty() {
            vec![]
        } else {
            vec![("x-token", self.token.as_str())]
        }
    }

    /// `curl URL -H 'x-token: …' -d 'value'` (curl's -d sends a form content type).
    async fn post(&self, path: &str, value: &str) -> Resp {
        let mut h = self.headers();
        h.push(("content-type", "application/x-www-form-urlencoded"));
        self.raw.send(Method::POST, &self.url(path), Some(value.as_bytes()), &h).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.raw.send(Method::GET, &self.url(path), None, &self.headers()).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.raw.send(Method::DELETE, &self.url(path), None, &self.headers()).await
    }
}

#[track_caller]
fn assert_text(resp: &Resp, status: u16, text: &str) {
    assert_eq!((resp.status, resp.text.as_str()), (status, text), "{resp:?}");
    assert!(resp.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "{resp:?}");
}

#[track_caller]
fn assert_status(resp: &Resp, status: u16) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert!(resp.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "{resp:?}");
}

/// The key's expiry as seen through the native API, in seconds from now.
async fn native_expiry_in(raw: &Raw, base: &str, stored_key: &str, headers: &[(&str, &str)]) -> f64 {
    let url = format!("{base}/kv/items/{}?consistency=strong", crate::support::encode_key(stored_key));
    let r = raw.send(Method::GET, &url, None, headers).await.ok();
    parse_rfc3339_utc(r.data()["expiresAt"].as_str().expect("a TTL")).expect("RFC 3339") - unix_now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_example_runs_on_a_three_node_cluster() {
    let mut c = Cluster::in_process(3, &["--admin-token", ADMIN]);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let mytoken = mint_token(&c.http, &c.url(leader), ADMIN, "echo", &["read", "write"]).await;
    until_token_known(&c.ids().iter().map(|id| c.url(*id)).collect::<Vec<_>>(), &mytoken, deadline_in(10)).await;
    let on = |id: u64| Client { raw: Raw::new(), base: c.url(id), token: mytoken.clone() };
    let (ev, via_follower) = (on(leader), on(c.follower_ids()[0]));

    // curl 'https://api.echovalue.dev/kv/default/mykey' -H 'x-token: mytoken' -d 'hello world'
    assert_text(&via_follower.post("default/mykey", "hello world").await, 200, "OK");
    let auth = [("x-token", mytoken.as_str())];
    let ahead = native_expiry_in(&ev.raw, &c.url(leader), "default/mykey", &auth).await;
    assert!((2_592_000.0 - 30.0..=2_592_005.0).contains(&ahead), "default TTL is 30 days, got {ahead}");
    // # With 30-second TTL
    assert_text(&via_follower.post("default/mykey?ttl=30", "hello world").await, 200, "OK");
    let ahead = native_expiry_in(&ev.raw, &c.url(leader), "default/mykey", &auth).await;
    assert!((0.0..=35.0).contains(&ahead), "ttl=30, got {ahead}");

    // curl 'https://api.echovalue.dev/kv/default/mykey' -H 'x-token: mytoken' → hello world
    assert_text(&ev.get("default/mykey").await, 200, "hello world");

    // curl ... -X DELETE → OK; then 404 for both a read and a second delete.
    assert_text(&via_follower.delete("default/mykey").await, 200, "OK");
    assert_status(&ev.get("default/mykey").await, 404);
    assert_status(&ev.delete("default/mykey").await, 404);

    // 401 Invalid token.
    let stranger = Client { raw: Raw::new(), base: c.url(leader), token: "not-a-token".into() };
    let r = stranger.get("default/mykey").await;
    assert_status(&r, 401);
    assert!(r.text.starts_with("Invalid token"), "{r:?}");
    let anonymous = Client { raw: Raw::new(), base: c.url(leader), token: String::new() };
    assert_status(&anonymous.post("default/mykey", "x").await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_ttls_follow_the_seed() {
    let mut c = Cluster::in_process_single(&[]);
    c.wait_for_leader(deadline_in(15)).await;
    // A loopback node without --admin-token serves the open `default` namespace.
    let ev = Client { raw: Raw::new(), base: c.url(1), token: String::new() };

    let limit = "x".repeat(30);
    assert_text(&ev.post(&format!("{limit}/{limit}"), "v").await, 200, "OK");
    assert_status(&ev.post(&format!("{limit}x/k"), "v").await, 400);
    assert_status(&ev.post(&format!("g/{limit}x"), "v").await, 400);
    assert_status(&ev.post("g%2Fh/k", "v").await, 400);
    assert_status(&ev.post("g/tab%09", "v").await, 400);

    let thousand = "é".repeat(1000);
    assert_text(&ev.post("g/long", &thousand).await, 200, "OK");
    assert_text(&ev.get("g/long").await, 200, &thousand);
    let r = ev.post("g/long", &format!("{thousand}!")).await;
    assert_status(&r, 400);
    assert!(r.text.starts_with("Malformed request"), "{r:?}");
    let r = ev.raw.send(Method::POST, &ev.url("g/bin"), Some(&[0xff, 0xfe]), &[]).await;
    assert_status(&r, 400);
    assert_text(&ev.post("g/empty", "").await, 200, "OK");
    assert_text(&ev.get("g/empty").await, 200, "");

    for bad in ["0", "2592001", "-1", "1.5", "soon"] {
        assert_status(&ev.post(&format!("g/t?ttl={bad}"), "v").await, 400);
    }
    assert_text(&ev.post("g/t?ttl=2592000", "v").await, 200, "OK");
    assert_text(&ev.post("g/short?ttl=1", "gone soon").await, 200, "OK");
    crate::support::until(deadline_in(10), "the 1 s key to expire", async || {
        let r = ev.get("g/short").await;
        if r.status == 404 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;

    // Stored as a JSON string at `{group}/{key}`: the native API sees the same key.
    ev.post("default/shared", "hello world").await;
    let native = ev.raw.send(Method::GET, &format!("{}/kv/items/default%2Fshared", ev.base), None, &[]).await.ok();
    assert_eq!(native.data()["value"], "hello world");

    let r = ev.raw.send(Method::PUT, &ev.url("g/k"), Some(b"v"), &[]).await;
    assert_status(&r, 405);
    assert_status(&ev.get("only-group").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_value_limit_applies_under_the_seeds_own() {
    // 500 characters are within the seed's 1000, but over the node's --max-value-bytes 100.
    let mut c = Cluster::in_process_single(&["--max-value-bytes", "100"]);
    c.wait_for_leader(deadline_in(15)).await;
    let ev = Client { raw: Raw::new(), base: c.url(1), token: String::new() };
    let r = ev.post("g/big", &"x".repeat(500)).await;
    assert_status(&r, 400);
    assert_status(&ev.get("g/big").await, 404);
    assert_text(&ev.post("g/small", "fits").await, 200, "OK");
}

/// A query parameter the seed does not give a route is `400 Malformed request: …` naming it,
/// and nothing is applied: a misspelled `ttl` would otherwise keep the value for 30 days. The
/// credential `?key=` and Cairn's `?consistency=` on reads still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_query_parameters_are_refused_naming_them() {
    let mut c = Cluster::in_process_single(&["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(15)).await;
    let token = mint_token(&c.http, &c.url(1), ADMIN, "echo", &["read", "write"]).await;
    let ev = Client { raw: Raw::new(), base: c.url(1), token: token.clone() };
    assert_text(&ev.post("g/k", "first").await, 200, "OK");

    let cases = [
        (ev.post("g/k?tll=30", "second").await, "tll"),
        (ev.post("g/new?ttl=30&if_not_exists=true", "second").await, "if_not_exists"),
        (ev.get("g/k?consistancy=strong").await, "consistancy"),
        (ev.delete("g/k?ttl=1").await, "ttl"),
    ];
    for (r, param) in cases {
        assert_status(&r, 400);
        assert!(r.text.starts_with("Malformed request: ") && r.text.contains(&format!("`{param}`")), "{r:?}");
    }

    assert_status(&ev.get("g/new").await, 404);
    assert_text(&ev.get("g/k?consistency=strong").await, 200, "first");
    let anonymous = Client { raw: Raw::new(), base: c.url(1), token: String::new() };
    let key = query_escape(&token);
    assert_text(&anonymous.get(&format!("g/k?key={key}&consistency=stale")).await, 200, "first");
    assert_text(&anonymous.post(&format!("g/k?key={key}&ttl=60"), "second").await, 200, "OK");
    assert_text(&anonymous.delete(&format!("g/k?key={key}")).await, 200, "OK");
}

//! Locks and elections: waiters are served first in, first out, each new holder's fencing
//! token is larger, a fenced write from a holder that lost the lock is refused, a holder whose
//! lease ends passes the lock on, a try-lock gives its place back, and an election's leader,
//! proclaim, observe and resign behave as etcd's do.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::sse;
use crate::support::{deadline_in, until, Cluster, Http, Resp};

async fn call(http: &Http, method: Method, url: String, body: Option<Value>) -> Resp {
    http.must(method, &url, body.map(|b| serde_json::to_vec(&b).unwrap()), &[]).await
}

async fn lease(http: &Http, base: &str) -> String {
    let r = call(http, Method::POST, format!("{base}/leases"), Some(json!({"ttlSeconds": 60}))).await;
    assert_eq!(r.status, 201, "{r:?}");
    r.data()["id"].as_str().unwrap().to_string()
}

fn token(r: &Resp) -> u64 {
    r.data()["token"].as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("a token: {r:?}"))
}

/// Waits until lock `name` has `n` waiters behind its holder.
async fn waiting(http: &Http, base: &str, name: &str, n: u64) {
    let url = format!("{base}/locks/{name}");
    until(deadline_in(10), &format!("{n} waiters on {name}"), async || {
        let r = http.send(Method::GET, &url, None, &[]).await?;
        (r.data()["waiting"] == n).then_some(()).ok_or(format!("{r:?}"))
    })
    .await;
}

fn fenced_put(lock: &str, t: u64, value: u64) -> Value {
    json!({"value": value, "ifFence": {"lock": lock, "token": t.to_string()}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_order_and_fencing_refuses_a_past_holder() {
    let mut c = Cluster::in_process(3, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    // Through a follower: the waiting happens at the leader, which the follower forwards to.
    let url = c.url(c.follower_ids()[0]);
    let http = c.http.clone();
    let (a, b, d) = (lease(&http, &url).await, lease(&http, &url).await, lease(&http, &url).await);

    let held = call(&http, Method::POST, format!("{url}/locks/job"), Some(json!({"lease": a}))).await;
    assert_eq!(held.status, 200, "{held:?}");
    let ta = token(&held);
    let w = c.http.put(&url, "out", &fenced_put("job", ta, 1)).await;
    assert_eq!(w.status, 200, "the holder's fenced write: {w:?}");

    // A try-lock while it is held: 409, and its place is given back.
    let busy = call(&http, Method::POST, format!("{url}/locks/job"), Some(json!({"lease": d}))).await;
    assert_eq!((busy.status, busy.error_code()), (409, Some("lock_held")), "{busy:?}");

    let spawn_wait = |lease: String| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            call(&http, Method::POST, format!("{url}/locks/job"), Some(json!({"lease": lease, "wait": "20s"}))).await
        })
    };
    let second = spawn_wait(b.clone());
    waiting(&http, &url, "job", 1).await;
    let third = spawn_wait(d.clone());
    waiting(&http, &url, "job", 2).await;

    let released = call(&http, Method::DELETE, format!("{url}/locks/job/{ta}"), None).await;
    assert_eq!(released.status, 200, "{released:?}");
    let second = tokio::time::timeout(Duration::from_secs(15), second).await.expect("second waiter answered").unwrap();
    assert_eq!(second.status, 200, "{second:?}");
    let tb = token(&second);
    assert!(tb > ta, "tokens grow: {ta} then {tb}");
    assert!(!third.is_finished(), "the third waiter still waits while the second holds");

    // The first holder, paused through all that, writes with its old token: refused.
    let stale = c.http.put(&url, "out", &fenced_put("job", ta, 2)).await;
    assert_eq!((stale.status, stale.error_code()), (409, Some("fenced")), "{stale:?}");
    let now = c.http.put(&url, "out", &fenced_put("job", tb, 3)).await;
    assert_eq!(now.status, 200, "{now:?}");

    // The holder's lease ends: the lock passes to the next waiter.
    let revoked = call(&http, Method::DELETE, format!("{url}/leases/{b}"), None).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let third = tokio::time::timeout(Duration::from_secs(15), third).await.expect("third waiter answered").unwrap();
    assert_eq!(third.status, 200, "{third:?}");
    assert!(token(&third) > tb);
    let stale = c.http.put(&url, "out", &fenced_put("job", tb, 4)).await;
    assert_eq!((stale.status, stale.error_code()), (409, Some("fenced")), "{stale:?}");
    assert_eq!(c.http.get(&c.leader_url(), "out").await.data()["value"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_has_one_leader_whose_token_fences_proclaim() {
    let mut c = Cluster::in_process(1, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    let url = c.leader_url();
    let http = c.http.clone();
    let (a, b) = (lease(&http, &url).await, lease(&http, &url).await);
    let none = call(&http, Method::GET, format!("{url}/elections/main/leader"), None).await;
    assert_eq!(none.status, 404, "{none:?}");

    let mut observed = sse::open(&format!("{url}/elections/main/observe"), &[]).await.expect("observe opens");
    let first = observed.next(deadline_in(5)).await.expect("the current state at once");
    assert_eq!(first.event, "none", "{first:?}");

    let won =
        call(&http, Method::POST, format!("{url}/elections/main/campaign"), Some(json!({"lease": a, "value": "a"})))
            .await;
    assert_eq!(won.status, 200, "{won:?}");
    let ta = token(&won);
    let seen = observed.next(deadline_in(5)).await.expect("the new leader");
    assert_eq!((seen.event.as_str(), &seen.data["value"]), ("leader", &json!("a")), "{seen:?}");

    let (h, u, lb) = (http.clone(), url.clone(), b.clone());
    let second = tokio::spawn(async move {
        call(
            &h,
            Method::POST,
            format!("{u}/elections/main/campaign"),
            Some(json!({"lease": lb, "value": "b", "wait": "20s"})),
        )
        .await
    });
    let body = |t: u64, v: &str| Some(json!({"token": t.to_string(), "value": v}));
    let p = call(&http, Method::PUT, format!("{url}/elections/main/proclaim"), body(ta, "a2")).await;
    assert_eq!(p.status, 200, "{p:?}");
    let seen = observed.next(deadline_in(5)).await.expect("the proclaimed value");
    assert_eq!(seen.data["value"], "a2", "{seen:?}");
    let wrong = call(&http, Method::PUT, format!("{url}/elections/main/proclaim"), body(ta + 1_000, "x")).await;
    assert_eq!((wrong.status, wrong.error_code()), (409, Some("fenced")), "{wrong:?}");

    let resigned = call(&http, Method::DELETE, format!("{url}/elections/main/resign?token={ta}"), None).await;
    assert_eq!(resigned.status, 200, "{resigned:?}");
    let second = tokio::time::timeout(Duration::from_secs(15), second).await.expect("campaign answered").unwrap();
    assert_eq!((second.status, &second.data()["value"]), (200, &json!("b")), "{second:?}");
    assert!(token(&second) > ta);
    let seen = observed.next(deadline_in(5)).await.expect("the next leader");
    assert_eq!(seen.data["value"], "b", "{seen:?}");
    let stale = call(&http, Method::PUT, format!("{url}/elections/main/proclaim"), body(ta, "late")).await;
    assert_eq!((stale.status, stale.error_code()), (409, Some("fenced")), "{stale:?}");
    let leader = call(&http, Method::GET, format!("{url}/elections/main/leader"), None).await;
    assert_eq!(leader.data()["value"], "b", "{leader:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lock_and_election_requests_get_clear_codes() {
    let mut c = Cluster::in_process(1, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    let (http, url) = (&c.http, c.leader_url());
    let l = lease(http, &url).await;
    for (body, code) in [
        (json!({}), "invalid_id"),
        (json!({"lease": "x"}), "invalid_id"),
        (json!({"lease": l, "wait": "forever"}), "invalid_ttl"),
        (json!({"lease": l, "wait": "61s"}), "invalid_ttl"),
        (json!({"lease": l, "wait": "1m"}), "invalid_ttl"),
        (json!({"lease": l, "holder": "me"}), "unknown_field"),
    ] {
        let r = call(http, Method::POST, format!("{url}/locks/j"), Some(body.clone())).await;
        assert_eq!((r.status, r.error_code()), (400, Some(code)), "{body}: {r:?}");
    }
    let r = call(http, Method::POST, format!("{url}/locks/j"), Some(json!({"lease": "424242"}))).await;
    assert_eq!((r.status, r.error_code()), (404, Some("lease_not_found")), "{r:?}");
    let r = call(http, Method::DELETE, format!("{url}/locks/j/77"), None).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")), "{r:?}");
    let r = call(http, Method::DELETE, format!("{url}/locks/j/x"), None).await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_id")), "{r:?}");
    for fence in
        [json!({"lock": "j"}), json!({"lock": "j", "token": "x"}), json!("j:1"), json!({"lock": "", "token": "1"})]
    {
        let r = http.put(&url, "k", &json!({"value": 1, "ifFence": fence})).await;
        assert_eq!(r.status, 400, "{fence}: {r:?}");
    }
    let r = http.put(&url, "k", &json!({"value": 1, "ifFence": {"lock": "j", "token": "1"}, "ifVersion": "1"})).await;
    assert_eq!((r.status, r.error_code()), (400, Some("conflicting_conditions")), "{r:?}");
    let r = http.put(&url, "k", &json!({"value": 1, "ifFence": {"lock": "nobody-holds", "token": "1"}})).await;
    assert_eq!((r.status, r.error_code()), (409, Some("fenced")), "{r:?}");
    let r = call(http, Method::POST, format!("{url}/elections/e/campaign"), Some(json!({"lease": l}))).await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_json")), "a campaign needs a value: {r:?}");
    let r = call(http, Method::DELETE, format!("{url}/elections/e/resign"), None).await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_id")), "{r:?}");
}

/// An election's observe stream ends, as a watch does, once the token it was opened with is
/// revoked: a revoked credential must not keep reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_observe_stream() {
    const ADMIN: &str = "Bearer locks-admin";
    let mut c = Cluster::in_process_single(&["--admin-token", "locks-admin"]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    let body = serde_json::to_vec(&json!({"namespace": "team", "permissions": ["read"]})).unwrap();
    let created =
        c.http.must(Method::POST, &format!("{url}/admin/tokens"), Some(body), &[("authorization", ADMIN)]).await;
    assert_eq!(created.status, 201, "{created:?}");
    let bearer = format!("Bearer {}", created.data()["token"].as_str().unwrap());
    let id = created.data()["id"].as_str().unwrap().to_string();
    let mut stream =
        sse::open(&format!("{url}/elections/e/observe"), &[("authorization", &bearer)]).await.expect("opens");
    let first = stream.next(deadline_in(5)).await.expect("the current state");
    assert_eq!(first.event, "none", "{first:?}");

    let revoked =
        c.http.must(Method::DELETE, &format!("{url}/admin/tokens/{id}"), None, &[("authorization", ADMIN)]).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let deadline = deadline_in(15);
    let mut events = Vec::new();
    while let Some(e) = stream.next(deadline).await {
        events.push(e.event);
    }
    assert_eq!(events, vec!["revoked".to_string()], "the stream says why, then ends");
    assert!(std::time::Instant::now() < deadline, "the stream ended rather than idling to the deadline");
}

/// Every kind of write takes a fence: an increment (its body, or a batch op) and a single-key
/// DELETE (`?ifFence=<lock>:<token>`) land while the token holds the lock and are refused with
/// 409 `fenced` once it has passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_and_deletes_are_fenced_too() {
    let mut c = Cluster::in_process(1, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    let url = c.leader_url();
    let http = c.http.clone();
    let (a, b) = (lease(&http, &url).await, lease(&http, &url).await);
    let ta = token(&call(&http, Method::POST, format!("{url}/locks/ctr"), Some(json!({"lease": a}))).await);
    let fence = |t: u64| json!({"lock": "ctr", "token": t.to_string()});
    let incr = |t: u64| Some(json!({"delta": 2, "ifFence": fence(t)}));

    let r = call(&http, Method::POST, format!("{url}/kv/items/n/increment"), incr(ta)).await;
    assert_eq!((r.status, &r.data()["value"]), (200, &json!(2)), "{r:?}");
    http.put(&url, "gone", &json!({"value": 1})).await.ok();
    let r = call(&http, Method::DELETE, format!("{url}/kv/items/gone?ifFence=ctr:{ta}"), None).await;
    assert_eq!(r.status, 200, "{r:?}");

    call(&http, Method::DELETE, format!("{url}/locks/ctr/{ta}"), None).await.ok();
    let tb = token(&call(&http, Method::POST, format!("{url}/locks/ctr"), Some(json!({"lease": b}))).await);
    let r = call(&http, Method::POST, format!("{url}/kv/items/n/increment"), incr(ta)).await;
    assert_eq!((r.status, r.error_code()), (409, Some("fenced")), "{r:?}");
    let ops = json!({"ops": [{"op": "increment", "key": "n", "ifFence": fence(ta)}]});
    let r = call(&http, Method::POST, format!("{url}/kv/batch"), Some(ops)).await;
    assert_eq!(r.status, 409, "a batch with a stale fence applies nothing: {r:?}");
    http.put(&url, "kept", &json!({"value": 1})).await.ok();
    let r = call(&http, Method::DELETE, format!("{url}/kv/items/kept?ifFence=ctr:{ta}"), None).await;
    assert_eq!((r.status, r.error_code()), (409, Some("fenced")), "{r:?}");
    assert_eq!(http.get(&url, "kept").await.status, 200);
    assert_eq!(http.get(&url, "n").await.data()["value"], 2, "no stale increment landed");

    let r = call(&http, Method::POST, format!("{url}/kv/items/n/increment"), incr(tb)).await;
    assert_eq!((r.status, &r.data()["value"]), (200, &json!(4)), "{r:?}");
    for bad in ["ctr", "ctr:", ":1", "ctr:x"] {
        let r = call(&http, Method::DELETE, format!("{url}/kv/items/kept?ifFence={bad}"), None).await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
    let r = call(&http, Method::DELETE, format!("{url}/kv/items/kept?ifFence=ctr:{tb}&ifVersion=1"), None).await;
    assert_eq!((r.status, r.error_code()), (400, Some("conflicting_conditions")), "{r:?}");
}

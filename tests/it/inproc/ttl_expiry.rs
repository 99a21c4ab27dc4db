//! TTL: a key written with ttlSeconds is readable with an expiresAt, then disappears on
//! every node (judged by each node's own stale read); a key without a TTL stays.

use std::collections::BTreeSet;

use crate::support::{deadline_in, parse_rfc3339_utc, unix_now, until, Cluster};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_key_expires_on_every_node_while_a_key_without_ttl_stays() {
    let mut c = Cluster::in_process(3, &[]);
    c.wait_for_leader(deadline_in(20)).await;
    let leader = c.leader_url();

    let keep = c.http.put(&leader, "keep", &json!({"value": "forever"})).await.ok();
    assert!(keep.data()["expiresAt"].is_null(), "no TTL means expiresAt null: {keep:?}");

    // The expiry deadline counts from the write; expiry is due ~1 s after it, plus ~2 s slack.
    let expiry_deadline = deadline_in(10);
    let put = c.http.put(&leader, "brief", &json!({"value": "soon gone", "ttlSeconds": 1})).await.ok();
    let got = c.http.get(&leader, "brief").await;
    assert_eq!(got.status, 200, "readable right after the write: {got:?}");
    assert_eq!(got.data()["value"], "soon gone", "{got:?}");

    for resp in [&put, &got] {
        let expires_at = resp.data()["expiresAt"]
            .as_str()
            .unwrap_or_else(|| panic!("expiresAt must be an RFC 3339 string: {resp:?}"));
        let at =
            parse_rfc3339_utc(expires_at).unwrap_or_else(|| panic!("expiresAt is not RFC 3339 UTC: {expires_at:?}"));
        // A sanity bound only (catches wrong units or epochs), not a timing assertion.
        assert!((at - unix_now()).abs() < 120.0, "expiresAt {expires_at} is far from now");
    }

    let http = &c.http;
    let urls: Vec<(u64, String)> = c.ids().into_iter().map(|id| (id, c.url(id))).collect();
    let urls = &urls;
    let written_at = put.version();
    // A 404 counts as expiry only on a node that had already applied the write in an
    // earlier answer; before that, a follower's stale 404 just means "not replicated yet".
    let mut caught_up = BTreeSet::new();
    let mut expired_on = BTreeSet::new();
    until(expiry_deadline, "the TTL key to read 404 on every node", async || {
        let mut pending = Vec::new();
        for (id, url) in urls {
            if expired_on.contains(id) {
                continue;
            }
            let resp = http.try_get_query(url, "brief", "consistency=stale").await?;
            match resp.status {
                404 if caught_up.contains(id) => {
                    assert_eq!(resp.error_code(), Some("not_found"), "node {id}: {resp:?}");
                    expired_on.insert(*id);
                    continue;
                }
                200 => assert_eq!(resp.data()["value"], "soon gone", "node {id}: {resp:?}"),
                404 => {}
                _ => panic!("node {id}: unexpected answer to a stale read: {resp:?}"),
            }
            if resp.applied_index() >= written_at {
                caught_up.insert(*id);
            }
            pending.push(format!("node {id}: {resp:?}"));
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(pending.join("; "))
        }
    })
    .await;

    for (id, url) in urls {
        let resp = http.get_query(url, "keep", "consistency=stale").await;
        assert_eq!(resp.status, 200, "node {id} lost the key without TTL: {resp:?}");
        assert_eq!(resp.data()["value"], Value::from("forever"), "node {id}: {resp:?}");
    }
}

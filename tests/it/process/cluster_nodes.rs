//! `GET /cluster/nodes` (the console's cluster panel): the node asked gathers every member's
//! own answers with the caller's credential, and a killed member shows as down, with the
//! reason, instead of being left out or holding the answer up.

use reqwest::Method;
use serde_json::Value;

use crate::support::raw::{bearer, mint_token, until_token_known, Raw};
use crate::support::{deadline_in, until, Cluster};

fn nodes(r: &crate::support::Resp) -> Vec<Value> {
    r.data()["nodes"].as_array().unwrap_or_else(|| panic!("no nodes in {r:?}")).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_reports_itself_and_a_killed_one_shows_as_down() {
    let mut c = Cluster::start_with(3, &["--admin-token", "nodes-admin"]);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let raw = Raw::new();
    let url = format!("{}/cluster/nodes", c.url(leader));

    raw.send(Method::GET, &url, None, &[]).await.assert_error(401, "unauthorized");

    // A read-only namespace token will do: each member is asked with it, so each answers its
    // status (which needs a credential) as well as the open probes.
    let token = mint_token(&c.http, &c.url(leader), "nodes-admin", "team", &["read"]).await;
    let bases: Vec<String> = c.ids().iter().map(|i| c.url(*i)).collect();
    until_token_known(&bases, &token, deadline_in(10)).await;
    let auth = bearer(&token);
    let r = raw.send(Method::GET, &url, None, &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.data()["answeredBy"], leader);
    let all = nodes(&r);
    assert_eq!(all.len(), 3, "{r:?}");
    for n in &all {
        let id = n["id"].as_u64().expect("an id");
        assert_eq!(n["addr"], c.addr(id).as_str(), "{n}");
        assert_eq!(
            (n["up"].as_bool(), n["health"].as_str(), n["ready"].as_bool()),
            (Some(true), Some("ok"), Some(true)),
            "{n}"
        );
        assert_eq!(n["status"]["id"], id, "{n}");
        assert_eq!(n["status"]["leader"], leader, "{n}");
        let role = if id == leader { "leader" } else { "follower" };
        assert_eq!(n["status"]["role"], role, "{n}");
        assert!(n["requests"].as_u64().is_some_and(|r| r > 0), "{n}");
        assert!(n.get("error").is_none(), "{n}");
    }

    let victim = c.follower_ids()[0];
    c.kill(victim);
    let r = until(deadline_in(15), "the killed node to show as down", async || {
        let r = raw.try_send(Method::GET, &url, None, &[("authorization", &auth)]).await?;
        let down = nodes(&r).iter().any(|n| n["id"] == victim && n["up"] == false);
        if down {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    for n in nodes(&r) {
        if n["id"] == victim {
            assert!(n["error"].as_str().is_some_and(|e| !e.is_empty()), "no reason given: {n}");
            assert!(n.get("status").is_none() && n.get("ready").is_none(), "{n}");
        } else {
            assert_eq!(n["up"], true, "{n}");
            assert_eq!(n["status"]["leader"], leader, "{n}");
        }
    }
}

//! KVdb (seed 002) at `/kvdb`: every curl example of the seed (their lost URLs restored the
//! way KVdb users write them) on a real three-node cluster, then the access-key rules, listing
//! formats and Accept negotiation, counters, TTLs, limits and bucket deletion on one node.

use crate::support::raw::{basic, query_escape, Raw};
use crate::support::{deadline_in, Cluster, Resp};
use reqwest::Method;
use serde_json::{json, Value};

/// `curl` against one node: `-d` bodies are sent as forms, `-u 'key:'` as Basic auth.
struct Curl {
    raw: Raw,
    base: String,
}

impl Curl {
    fn url(&self, path: &str) -> String {
        format!("{}/kvdb{path}", self.base)
    }

    fn auth(user: Option<&str>) -> Option<String> {
        user.map(basic)
    }

    async fn req(&self, method: Method, path: &str, body: Option<&str>, user: Option<&str>) -> Resp {
        let auth = Self::auth(user);
        let mut h: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            h.push(("authorization", a));
        }
        if body.is_some() {
            h.push(("content-type", "application/x-www-form-urlencoded"));
        }
        self.raw.send(method, &self.url(path), body.map(str::as_bytes), &h).await
    }

    async fn with_accept(&self, path: &str, accept: &str, user: Option<&str>) -> Resp {
        let auth = Self::auth(user).unwrap_or_default();
        let mut h = vec![("accept", accept)];
        if !auth.is_empty() {
            h.push(("authorization", &auth));
        }
        self.raw.send(Method::GET, &self.url(path), None, &h).await
    }

    /// `curl -d '…' https://kvdb.io` → the new bucket id.
    async fn create(&self, form: &str) -> String {
        let r = self.req(Method::POST, "", Some(form), None).await.ok();
        assert!(r.text.len() >= 16 && r.text.bytes().all(|b| b.is_ascii_alphanumeric()), "a bucket id: {r:?}");
        r.text
    }
}

#[track_caller]
fn assert_text(resp: &Resp, status: u16, text: &str) {
    assert_eq!((resp.status, resp.text.as_str()), (status, text), "{resp:?}");
}

#[track_caller]
fn assert_status(resp: &Resp, status: u16) {
    assert_eq!(resp.status, status, "{resp:?}");
    if status >= 400 {
        assert!(resp.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "text errors: {resp:?}");
        assert!(!resp.text.trim().is_empty(), "errors say why: {resp:?}");
    }
}

async fn single() -> (Cluster, Curl) {
    let mut c = Cluster::in_process_single(&[]);
    c.wait_for_leader(deadline_in(15)).await;
    let curl = Curl { raw: Raw::new(), base: c.url(1) };
    (c, curl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_example_runs_on_a_three_node_cluster() {
    let mut c = Cluster::in_process(3, &[]);
    let leader = c.wait_for_leader(deadline_in(20)).await;
    let kv = Curl { raw: Raw::new(), base: c.url(leader) };
    let via_follower = Curl { raw: Raw::new(), base: c.url(c.follower_ids()[0]) };

    // Create a new bucket that lets anyone read, write, and list keys: curl -d ''
    let open = via_follower.create("").await;
    // ... with a secret_key, write_key, and all keys expiring after 1 hour.
    let guarded = via_follower.create("secret_key=supersecret&write_key=knock&default_ttl=3600").await;
    assert_ne!(open, guarded);

    // Set key: curl https://kvdb.io/$B/hello -d 'world' (with -u 'knock:' on the guarded one).
    assert_status(&via_follower.req(Method::POST, &format!("/{open}/hello"), Some("world"), None).await, 200);
    assert_status(
        &via_follower.req(Method::POST, &format!("/{guarded}/hello"), Some("world"), Some("knock")).await,
        200,
    );
    // Set key with a 30 second expiry: curl https://kvdb.io/$B/hello?ttl=30 -d 'world'
    assert_status(&via_follower.req(Method::POST, &format!("/{open}/hello2?ttl=30"), Some("world"), None).await, 200);

    // Get value: curl https://kvdb.io/$B/hello → world (no key needed, even when guarded).
    assert_text(&kv.req(Method::GET, &format!("/{open}/hello"), None, None).await, 200, "world");
    assert_text(&kv.req(Method::GET, &format!("/{guarded}/hello"), None, None).await, 200, "world");

    // Update a key (counter): curl -XPATCH https://kvdb.io/$B/hits -d '+1' → the new value.
    for (body, expect) in [("+1", "1"), ("+1", "2"), ("-1", "1")] {
        assert_text(&via_follower.req(Method::PATCH, &format!("/{open}/hits"), Some(body), None).await, 200, expect);
    }

    // List keys: curl https://kvdb.io/$B/ -u 'supersecret:'
    for k in ["hits_2018_01", "hits_2018_02", "hits_2019_01", "visitors", "flavor-today"] {
        kv.req(Method::PUT, &format!("/{guarded}/{k}"), Some("1"), Some("supersecret")).await.ok();
    }
    let all = kv.req(Method::GET, &format!("/{guarded}/"), None, Some("supersecret")).await.ok();
    assert_eq!(all.text, "flavor-today\nhello\nhits_2018_01\nhits_2018_02\nhits_2019_01\nvisitors\n");
    // List keys with the prefix hits_2018.
    let p = kv.req(Method::GET, &format!("/{guarded}/?prefix=hits_2018"), None, Some("supersecret")).await.ok();
    assert_eq!(p.text, "hits_2018_01\nhits_2018_02\n");
    // Regular expression: ^hits_2018.* (URL encode it)
    let re = query_escape("^hits_2018.*");
    let r = kv.req(Method::GET, &format!("/{guarded}/?regex={re}"), None, Some("supersecret")).await.ok();
    assert_eq!(r.text, "hits_2018_01\nhits_2018_02\n");
    // List keys and their values as JSON: [["visitors", 101], ["flavor-today", "coconut"]]
    kv.req(Method::PUT, &format!("/{guarded}/visitors"), Some("101"), Some("knock")).await.ok();
    kv.req(Method::PUT, &format!("/{guarded}/flavor-today"), Some("coconut"), Some("knock")).await.ok();
    let path = format!("/{guarded}/?values=true&format=json&regex={}", query_escape("^(visitors|flavor)"));
    let j = kv.req(Method::GET, &path, None, Some("supersecret")).await.ok();
    assert_eq!(j.body, json!([["flavor-today", "coconut"], ["visitors", 101]]), "{j:?}");

    // Update bucket policy — make the open-by-write bucket read-only: -d 'write_key=knock'
    // -u 'supersecret:'. (A bucket with a secret key and no write key, then a write key set.)
    let policy = via_follower.create("secret_key=supersecret").await;
    assert_status(&kv.req(Method::POST, &format!("/{policy}/k"), Some("v"), None).await, 200);
    assert_status(
        &via_follower.req(Method::PATCH, &format!("/{policy}"), Some("write_key=knock"), Some("supersecret")).await,
        200,
    );
    assert_status(&kv.req(Method::POST, &format!("/{policy}/k"), Some("v2"), None).await, 403);
    assert_status(&kv.req(Method::POST, &format!("/{policy}/k"), Some("v2"), Some("knock")).await, 200);
    // The same update as curl sends it without -X (a POST) also works.
    assert_status(
        &kv.req(Method::POST, &format!("/{policy}"), Some("write_key=knock2"), Some("supersecret")).await,
        200,
    );
    assert_status(&kv.req(Method::POST, &format!("/{policy}/k"), Some("v3"), Some("knock")).await, 401);

    // The key can also go in the query string: ?key=supersecret
    let q = kv.req(Method::GET, &format!("/{guarded}/?key=supersecret&prefix=vis"), None, None).await.ok();
    assert_eq!(q.text, "visitors\n");

    // Delete key: curl -XDELETE https://kvdb.io/$B/hello
    assert_status(&via_follower.req(Method::DELETE, &format!("/{open}/hello"), None, None).await, 200);
    assert_status(&kv.req(Method::GET, &format!("/{open}/hello"), None, None).await, 404);

    // Delete bucket: curl -XDELETE https://kvdb.io/$B -u 'supersecret:'
    assert_status(&via_follower.req(Method::DELETE, &format!("/{guarded}"), None, Some("supersecret")).await, 200);
    assert_status(&kv.req(Method::GET, &format!("/{guarded}/visitors"), None, None).await, 404);
    assert_status(&kv.req(Method::GET, &format!("/{guarded}/"), None, Some("supersecret")).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_and_write_keys_govern_access_as_the_seed_says() {
    let (_c, kv) = single().await;
    let b = kv.create("secret_key=supersecret&write_key=knock").await;
    let key = format!("/{b}/k");

    // Reads need no key; a wrong key is 401 ("Your API key is wrong").
    assert_status(&kv.req(Method::PUT, &key, Some("v"), Some("knock")).await, 200);
    assert_text(&kv.req(Method::GET, &key, None, None).await, 200, "v");
    assert_status(&kv.req(Method::GET, &key, None, Some("wrong")).await, 401);

    // Writes need the write key or the secret key: 403 without, 401 with a wrong one.
    assert_status(&kv.req(Method::PUT, &key, Some("v"), None).await, 403);
    assert_status(&kv.req(Method::PUT, &key, Some("v"), Some("wrong")).await, 401);
    assert_status(&kv.req(Method::PUT, &key, Some("v"), Some("supersecret")).await, 200);
    assert_status(&kv.req(Method::PATCH, &format!("/{b}/n"), Some("+1"), None).await, 403);
    assert_status(&kv.req(Method::DELETE, &key, None, None).await, 403);

    // Listing and policy changes need the secret key; the write key is not enough.
    assert_status(&kv.req(Method::GET, &format!("/{b}/"), None, None).await, 403);
    assert_status(&kv.req(Method::GET, &format!("/{b}/"), None, Some("knock")).await, 403);
    assert_status(&kv.req(Method::GET, &format!("/{b}"), None, Some("supersecret")).await, 200);
    assert_status(&kv.req(Method::PATCH, &format!("/{b}"), Some("default_ttl=60"), Some("knock")).await, 403);
    assert_status(&kv.req(Method::DELETE, &format!("/{b}"), None, Some("knock")).await, 403);

    // The secret key can be changed (the old one stops working) but not removed.
    assert_status(&kv.req(Method::PATCH, &format!("/{b}"), Some("secret_key="), Some("supersecret")).await, 400);
    assert_status(&kv.req(Method::PATCH, &format!("/{b}"), Some("secret_key=s2"), Some("supersecret")).await, 200);
    assert_status(&kv.req(Method::GET, &format!("/{b}/"), None, Some("supersecret")).await, 401);
    assert_status(&kv.req(Method::GET, &format!("/{b}/"), None, Some("s2")).await, 200);
    // An empty write_key removes the write protection.
    assert_status(&kv.req(Method::PATCH, &format!("/{b}"), Some("write_key="), Some("s2")).await, 200);
    assert_status(&kv.req(Method::PUT, &key, Some("open"), None).await, 200);

    // A bucket created without a secret key: anyone reads, writes and lists; its policy is
    // fixed, and a secret key cannot be added later.
    let open = kv.create("").await;
    assert_status(&kv.req(Method::PUT, &format!("/{open}/a"), Some("1"), None).await, 200);
    assert_text(&kv.req(Method::GET, &format!("/{open}/"), None, None).await, 200, "a\n");
    assert_status(&kv.req(Method::PATCH, &format!("/{open}"), Some("secret_key=mine"), None).await, 403);
    assert_status(&kv.req(Method::PATCH, &format!("/{open}"), Some("write_key=mine"), None).await, 403);
    // A key sent to a bucket that has none is ignored.
    assert_text(&kv.req(Method::GET, &format!("/{open}/a"), None, Some("whatever")).await, 200, "1");

    // A write-key-only bucket: deleting it needs the write key.
    let w = kv.create("write_key=knock").await;
    assert_status(&kv.req(Method::DELETE, &format!("/{w}"), None, None).await, 403);
    assert_status(&kv.req(Method::DELETE, &format!("/{w}"), None, Some("knock")).await, 200);

    // Unknown buckets and malformed forms.
    assert_status(&kv.req(Method::GET, "/nosuchbucket/k", None, None).await, 404);
    assert_status(&kv.req(Method::GET, "/no:such/k", None, None).await, 404);
    assert_status(&kv.req(Method::POST, "", Some("secret-key=typo"), None).await, 400);
    assert_status(&kv.req(Method::POST, "", Some("default_ttl=soon"), None).await, 400);
    assert_status(&kv.req(Method::GET, "", None, None).await, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_formats_follow_the_format_parameter_and_accept_header() {
    let (_c, kv) = single().await;
    let b = kv.create("").await;
    for (k, v) in [("a", "1"), ("b", "two\nlines"), ("c", "2.5")] {
        kv.req(Method::PUT, &format!("/{b}/{k}"), Some(v), None).await.ok();
    }
    let list = async |q: &str| kv.req(Method::GET, &format!("/{b}/?{q}"), None, None).await;
    assert_eq!(list("").await.ok().text, "a\nb\nc\n");
    assert_eq!(list("values=true").await.ok().text, "a=1\nb=two\\nlines\nc=2.5\n");
    let j = list("format=json").await.ok();
    assert_eq!((j.body.clone(), j.header("content-type")), (json!(["a", "b", "c"]), Some("application/json")));
    assert_eq!(list("format=json&values=true").await.ok().body, json!([["a", 1], ["b", "two\nlines"], ["c", 2.5]]));
    let lines = list("format=jsonl").await.ok();
    assert_eq!(lines.text, "\"a\"\n\"b\"\n\"c\"\n");
    let lines = list("format=jsonl&values=true").await.ok();
    let parsed: Vec<Value> = lines.text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(parsed, vec![json!(["a", 1]), json!(["b", "two\nlines"]), json!(["c", 2.5])]);
    assert_eq!(list("limit=2").await.ok().text, "a\nb\n");
    assert_eq!(list("prefix=b").await.ok().text, "b\n");
    assert_eq!(list(&format!("regex={}", query_escape("[ac]$"))).await.ok().text, "a\nc\n");

    // Accept negotiation: JSON when asked for, text for wildcards and text/plain, else 406.
    let path = format!("/{b}/");
    assert_eq!(kv.with_accept(&path, "application/json", None).await.ok().body, json!(["a", "b", "c"]));
    assert_eq!(kv.with_accept(&path, "text/html,*/*;q=0.8", None).await.ok().text, "a\nb\nc\n");
    assert_eq!(kv.with_accept(&path, "text/plain", None).await.ok().text, "a\nb\nc\n");
    assert_status(&kv.with_accept(&path, "application/x-ndjson", None).await, 406);
    assert_status(&kv.with_accept(&path, "image/png", None).await, 406);
    assert_status(&list("format=xml").await, 406);

    // Bad parameters are 400, and a regex is bounded instead of run unchecked.
    for q in ["limit=0", "limit=10001", "values=maybe", "regex=(", "regex=(a{1000}){1000}"] {
        assert_status(&list(q).await, 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_counters_ttls_and_limits() {
    let (c, kv) = single().await;
    let b = kv.create("default_ttl=100").await;
    let at = |k: &str| format!("/{b}/{k}");

    // Keys up to 128 bytes (of text), values up to 16 KB; both read back byte for byte.
    let long_key = "k".repeat(128);
    kv.req(Method::PUT, &at(&long_key), Some("v"), None).await.ok();
    assert_status(&kv.req(Method::PUT, &at(&"k".repeat(129)), Some("v"), None).await, 400);
    let big = "é".repeat(8 * 1024); // 16 KiB of UTF-8
    kv.req(Method::PUT, &at("big"), Some(&big), None).await.ok();
    assert_text(&kv.req(Method::GET, &at("big"), None, None).await, 200, &big);
    assert_status(&kv.req(Method::PUT, &at("big"), Some(&format!("{big}!")), None).await, 400);
    assert_status(&kv.raw.send(Method::PUT, &kv.url(&at("bin")), Some(&[0xff]), &[]).await, 400);
    kv.req(Method::PUT, &at("nested/path"), Some("slashes are part of the key"), None).await.ok();
    assert_text(&kv.req(Method::GET, &at("nested%2Fpath"), None, None).await, 200, "slashes are part of the key");
    for v in ["007", "1.50", "+5", " 3", ""] {
        kv.req(Method::PUT, &at("odd"), Some(v), None).await.ok();
        assert_text(&kv.req(Method::GET, &at("odd"), None, None).await, 200, v);
    }

    // Counters: 64-bit integers and floats; missing keys start at 0; text refuses.
    assert_text(&kv.req(Method::PATCH, &at("n"), Some("+9223372036854775806"), None).await, 200, "9223372036854775806");
    assert_text(&kv.req(Method::PATCH, &at("n"), Some("+1"), None).await, 200, "9223372036854775807");
    assert_status(&kv.req(Method::PATCH, &at("n"), Some("+1"), None).await, 400);
    assert_text(&kv.req(Method::PATCH, &at("f"), Some("+1.5"), None).await, 200, "1.5");
    assert_text(&kv.req(Method::PATCH, &at("f"), Some("-0.25"), None).await, 200, "1.25");
    // A stored decimal counts as the float it spells, as on KVdb: `2.50` + 1 is 3.5. Text
    // that only looks numeric (`007`, `+5`, `1e3`) is text.
    kv.req(Method::PUT, &at("price"), Some("2.50"), None).await.ok();
    assert_text(&kv.req(Method::GET, &at("price"), None, None).await, 200, "2.50");
    assert_text(&kv.req(Method::PATCH, &at("price"), Some("+1"), None).await, 200, "3.5");
    for text in ["007", "+5", "1e3"] {
        kv.req(Method::PUT, &at("numberish"), Some(text), None).await.ok();
        assert_status(&kv.req(Method::PATCH, &at("numberish"), Some("+1"), None).await, 400);
    }
    kv.req(Method::PUT, &at("word"), Some("coconut"), None).await.ok();
    assert_status(&kv.req(Method::PATCH, &at("word"), Some("+1"), None).await, 400);
    for bad in ["1", "+", "+x", "++1", "+1e999"] {
        assert_status(&kv.req(Method::PATCH, &at("n2"), Some(bad), None).await, 400);
    }

    // TTLs. A bucket's keys are private (no other API shows their expiry), so each TTL is
    // shown by the order in which keys expire: `probe` is written last with a 1 s TTL, so once
    // it has expired, every key whose TTL was at most 1 s has expired too.
    let gone = async |k: &str| kv.req(Method::GET, &at(k), None, None).await.status == 404;
    kv.req(Method::PUT, &at("short?ttl=1"), Some("v"), None).await.ok();
    kv.req(Method::PUT, &at("long?ttl=5000"), Some("v"), None).await.ok();
    kv.req(Method::PUT, &at("forever?ttl=0"), Some("v"), None).await.ok();
    kv.req(Method::PUT, &at("defaulted"), Some("v"), None).await.ok();
    // PATCH of an existing counter renews its TTL ("keys not updated expire after this
    // time"): to `?ttl=`, or else to the bucket's default_ttl (100 s here).
    kv.req(Method::PUT, &at("renewed?ttl=1"), Some("1"), None).await.ok();
    assert_text(&kv.req(Method::PATCH, &at("renewed?ttl=5000"), Some("+1"), None).await, 200, "2");
    kv.req(Method::PUT, &at("renewed_default?ttl=1"), Some("1"), None).await.ok();
    assert_text(&kv.req(Method::PATCH, &at("renewed_default"), Some("+1"), None).await, 200, "2");
    kv.req(Method::PUT, &at("probe?ttl=1"), Some("v"), None).await.ok();
    crate::support::until(deadline_in(10), "the 1 s probe to expire", async || {
        if gone("probe").await {
            Ok(())
        } else {
            Err("probe still there".to_string())
        }
    })
    .await;
    assert!(gone("short").await, "?ttl=1 expired");
    for k in ["long", "forever", "defaulted", "renewed", "renewed_default"] {
        assert!(!gone(k).await, "{k} outlives a 1 s TTL");
    }
    assert_status(&kv.req(Method::PUT, &at("x?ttl=soon"), Some("v"), None).await, 400);

    kv.req(Method::PUT, &at("brief?ttl=1"), Some("v"), None).await.ok();
    crate::support::until(deadline_in(10), "the 1 s key to expire", async || {
        let r = kv.req(Method::GET, &at("brief"), None, None).await;
        if r.status == 404 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bucket_removes_all_its_keys() {
    let (_c, kv) = single().await;
    let b = kv.create("secret_key=s").await;
    let keep = kv.create("").await;
    kv.req(Method::PUT, &format!("/{keep}/k"), Some("kept"), None).await.ok();
    // 250 keys: more than two sweep batches of 100.
    for i in 0..250 {
        kv.req(Method::PUT, &format!("/{b}/k{i:03}"), Some("v"), Some("s")).await.ok();
    }
    let listed = kv.req(Method::GET, &format!("/{b}/?limit=10000"), None, Some("s")).await.ok();
    assert_eq!(listed.text.lines().count(), 250);
    // Each bucket's policy record and keys count in the namespace: 1 + 250, and 1 + 1.
    assert_eq!(key_count(&kv, "default").await, Some(253));
    assert_eq!(key_count(&kv, "~kvdb").await, Some(2), "one private lookup per bucket");

    assert_status(&kv.req(Method::DELETE, &format!("/{b}"), None, Some("s")).await, 200);
    assert_status(&kv.req(Method::GET, &format!("/{b}/k000"), None, None).await, 404);
    assert_status(&kv.req(Method::PUT, &format!("/{b}/k000"), Some("v"), Some("s")).await, 404);
    assert_status(&kv.req(Method::DELETE, &format!("/{b}"), None, Some("s")).await, 404);
    crate::support::until(deadline_in(15), "the bucket's keys to be swept", async || {
        match (key_count(&kv, "default").await, key_count(&kv, "~kvdb").await) {
            (Some(2), Some(1)) => Ok(()),
            n => Err(format!("{n:?} keys left in default and ~kvdb")),
        }
    })
    .await;
    assert_text(&kv.req(Method::GET, &format!("/{keep}/k"), None, None).await, 200, "kept");
}

/// `cairn_keys{namespace=...}` from `/metrics`: keys stored in a namespace (`~kvdb` is the
/// private namespace of bucket lookups).
async fn key_count(kv: &Curl, ns: &str) -> Option<u64> {
    let m = kv.raw.send(Method::GET, &format!("{}/metrics", kv.base), None, &[]).await.ok();
    let line = format!("cairn_keys{{namespace=\"{ns}\"}} ");
    m.text.lines().find_map(|l| l.strip_prefix(line.as_str())).map(|n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_value_limit_applies_under_the_seeds_own() {
    // 5,000 bytes are within KVdb's 16 KiB, but over the node's --max-value-bytes 100.
    let mut c = Cluster::in_process_single(&["--max-value-bytes", "100"]);
    c.wait_for_leader(deadline_in(15)).await;
    let kv = Curl { raw: Raw::new(), base: c.url(1) };
    let b = kv.create("").await;
    assert_status(&kv.req(Method::POST, &format!("/{b}/big"), Some(&"x".repeat(5000)), None).await, 400);
    assert_status(&kv.req(Method::GET, &format!("/{b}/big"), None, None).await, 404);
    assert_status(&kv.req(Method::POST, &format!("/{b}/small"), Some("fits"), None).await, 200);
}

/// Buckets made before the private key space kept their records as ordinary keys (`_kvdb`
/// lookups, `kvdb:{id}` policies with unsalted SHA-256 hashes, `kvdb:{id}:{key}` data). They
/// are still served after an upgrade, and a native write that damages their records makes the
/// bucket 404, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_in_the_legacy_layout_are_still_served() {
    use sha2::{Digest, Sha256};
    let mut c = Cluster::in_process_single(&["--admin-token", "legacy-admin"]);
    c.wait_for_leader(deadline_in(15)).await;
    let kv = Curl { raw: Raw::new(), base: c.url(1) };
    let native = async |ns: &str, key: &str, value: Value| {
        let url = format!("{}/kv/items/{}", kv.base, crate::support::encode_key(key));
        let h = [("authorization", "Bearer legacy-admin"), ("x-cairn-namespace", ns)];
        kv.raw.json(Method::PUT, &url, &json!({ "value": value }), &h).await.ok()
    };
    let id = "LegacyBucket0000000001";
    let hash: String = Sha256::digest(b"s").iter().map(|b| format!("{b:02x}")).collect();
    native("_kvdb", id, json!({"namespace": "team"})).await;
    let policy = json!({"secret_key_sha256": hash, "write_key_sha256": null, "default_ttl": 0});
    native("team", &format!("kvdb:{id}"), policy).await;
    native("team", &format!("kvdb:{id}:k"), json!("v")).await;

    assert_text(&kv.req(Method::GET, &format!("/{id}/k"), None, None).await, 200, "v");
    assert_text(&kv.req(Method::GET, &format!("/{id}/"), None, Some("s")).await, 200, "k\n");
    assert_status(&kv.req(Method::GET, &format!("/{id}/"), None, None).await, 403);
    assert_status(&kv.req(Method::GET, &format!("/{id}/"), None, Some("wrong")).await, 401);
    assert_status(&kv.req(Method::PUT, &format!("/{id}/k2"), Some("v2"), Some("s")).await, 200);
    assert_text(&kv.req(Method::GET, &format!("/{id}/k2"), None, None).await, 200, "v2");

    native("team", &format!("kvdb:{id}"), json!("not a policy")).await;
    assert_status(&kv.req(Method::GET, &format!("/{id}/k"), None, None).await, 404);
    assert_status(&kv.req(Method::PUT, &format!("/{id}/k"), Some("v"), Some("s")).await, 404);
}

/// A query parameter a KVdb route does not take is refused (400, naming it), never ignored:
/// a misspelled `ttl` would otherwise keep a key for the bucket's default week, and a
/// `?secret_key=` on creation would make an open bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_query_parameters_are_refused_naming_them() {
    let (_c, kv) = single().await;
    let b = kv.create("secret_key=s").await;
    let cases = [
        (Method::PUT, format!("/{b}/k?tll=5"), "tll"),
        (Method::PATCH, format!("/{b}/n?ttl=5&delta=1"), "delta"),
        (Method::GET, format!("/{b}/k?verbose=1"), "verbose"),
        (Method::DELETE, format!("/{b}/k?force=1"), "force"),
        (Method::GET, format!("/{b}/?limt=5"), "limt"),
        (Method::POST, format!("/{b}?write_key=w"), "write_key"),
        (Method::DELETE, format!("/{b}?now=1"), "now"),
        (Method::POST, "?secret_key=x".to_string(), "secret_key"),
    ];
    for (method, path, name) in cases {
        let body =
            matches!(method, Method::PUT | Method::PATCH).then_some(if method == Method::PATCH { "+1" } else { "v" });
        // Creation takes a Cairn credential (none on this open node), the rest the bucket key.
        let key = (!path.starts_with('?')).then_some("s");
        let r = kv.req(method.clone(), &path, body, key).await;
        assert_status(&r, 400);
        assert!(r.text.contains(&format!("`{name}`")), "{method} {path}: names the parameter: {r:?}");
    }
    assert_status(&kv.req(Method::GET, &format!("/{b}/k"), None, None).await, 404);
    assert_status(&kv.req(Method::GET, &format!("/{b}/n"), None, None).await, 404);
    // `?key=` carries the bucket key, `?ttl=` and `?consistency=` are the routes' own.
    assert_status(&kv.req(Method::PUT, &format!("/{b}/k?ttl=5&key=s"), Some("v"), None).await, 200);
    assert_text(&kv.req(Method::GET, &format!("/{b}/k?consistency=stale"), None, None).await, 200, "v");
}

/// A listing is produced a page at a time (at most 1 MiB of values per page, so it is never
/// built whole): 300 values of 10 KB span several pages and still list as one document, each
/// key once and in order, in every format, with `limit` and `regex` applied across pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_many_large_values_streams_across_pages() {
    let (_c, kv) = single().await;
    let b = kv.create("").await;
    let value = |i: usize| format!("{i:05}{}", "v".repeat(10_000));
    let names: Vec<String> = (0..300).map(|i| format!("k{i:03}")).collect();
    for chunk in names.chunks(25) {
        let puts = chunk.iter().map(|k| {
            let i: usize = k[1..].parse().unwrap();
            let path = format!("/{b}/{k}");
            let body = value(i);
            let kv = &kv;
            async move { kv.req(Method::PUT, &path, Some(&body), None).await.ok() }
        });
        futures::future::join_all(puts).await;
    }
    let list = async |q: &str| kv.req(Method::GET, &format!("/{b}/?{q}"), None, None).await.ok();

    let json = list("values=true&format=json").await;
    // Sent as it is read: chunked, with no length known up front.
    assert_eq!((json.header("transfer-encoding"), json.header("content-length")), (Some("chunked"), None));
    let pairs = json.body.as_array().expect("one JSON array").clone();
    assert_eq!(pairs.len(), 300);
    for (i, p) in pairs.iter().enumerate() {
        assert_eq!(p, &json!([names[i], value(i)]), "entry {i} in order");
    }
    let text = list("values=true").await.text;
    assert_eq!(text.lines().count(), 300);
    assert!(text.lines().zip(&names).all(|(l, k)| l.starts_with(&format!("{k}="))));
    let jsonl = list("values=true&format=jsonl").await.text;
    assert_eq!(jsonl.lines().count(), 300);
    assert_eq!(list("format=json&limit=150").await.body.as_array().unwrap().len(), 150);
    // `regex` keeps k0x5 and k2x5 (60 keys), spread over every page.
    let re = crate::support::raw::query_escape("^k[02].5$");
    let matched = list(&format!("format=json&regex={re}")).await.body;
    let expected: Vec<&String> =
        names.iter().filter(|k| (k.starts_with("k0") || k.starts_with("k2")) && k.ends_with('5')).collect();
    assert_eq!(matched, json!(expected));
    assert_eq!(
        list(&format!("format=json&regex={}", crate::support::raw::query_escape("^none"))).await.body,
        json!([])
    );
}

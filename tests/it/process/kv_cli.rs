//! `cairn kv ls`, `cairn kv batch` and `-o`, run as the binary against a real node: a listing
//! follows every page and stops at `--limit`, each output format prints what it says, and a
//! batch file runs as one atomic batch with the CLI's exit codes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{deadline_in, run_cairn_once, Cluster};

async fn cairn(args: &[&str], endpoint: &str) -> (i32, String, String) {
    let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    argv.extend(["--endpoints".to_string(), endpoint.to_string()]);
    let out = run_cairn_once(&argv, deadline_in(60)).await;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn node() -> (Cluster, String) {
    let mut c = Cluster::single_with(&[]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);
    (c, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_follows_every_page_in_order_and_stops_at_the_limit() {
    let (c, url) = node().await;
    // 1,205 keys: more than one 1,000-key page, so the listing must follow a cursor.
    let keys: Vec<String> = (0..1205).map(|i| format!("ls/{i:04}")).collect();
    for chunk in keys.chunks(100) {
        let ops: Vec<Value> = chunk.iter().map(|k| json!({"op": "set", "key": k, "value": {"k": k}})).collect();
        let body = serde_json::to_vec(&json!({"ops": ops})).unwrap();
        c.http.must(Method::POST, &format!("{url}/kv/batch"), Some(body), &[]).await.ok();
    }
    c.http.put(&url, "lt", &json!({"value": 1})).await.ok();

    let (code, out, err) = cairn(&["kv", "ls", "ls/"], &url).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), keys, "every key once, in order, and nothing outside the prefix");

    let (code, out, err) = cairn(&["kv", "ls", "ls/", "--limit", "1001"], &url).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), keys[..1001]);

    let (code, out, err) = cairn(&["kv", "ls", "ls/", "--values", "-o", "jsonl", "--limit", "3"], &url).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[2]["key"], "ls/0002");
    assert_eq!(lines[2]["value"], json!({"k": "ls/0002"}));

    let (code, out, err) = cairn(&["kv", "ls", "ls/", "-o", "json", "--stale"], &url).await;
    assert_eq!(code, 0, "{err}");
    let array: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(array.as_array().unwrap().len(), 1205);
    assert!(array[0].get("value").is_none(), "no values without --values: {}", array[0]);

    let (code, out, err) = cairn(&["kv", "ls", "nothing/", "-o", "json"], &url).await;
    assert_eq!((code, out.trim()), (0, "[]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_runs_a_file_atomically_and_get_prints_each_format() {
    let (c, url) = node().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ops.json");
    let path = file.to_str().unwrap();

    std::fs::write(&file, r#"{"ops": [{"op": "set", "key": "a", "value": "hello"}, {"op": "increment", "key": "n"}]}"#)
        .unwrap();
    let (code, out, err) = cairn(&["kv", "batch", path], &url).await;
    assert_eq!(code, 0, "{err}");
    let results: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(results["results"][1]["value"], 1, "{out}");

    // The bare array form; op 1's condition fails, so nothing is applied and the exit is 1.
    std::fs::write(
        &file,
        r#"[{"op": "set", "key": "b", "value": 1}, {"op": "set", "key": "a", "value": 2, "ifNotExists": true}]"#,
    )
    .unwrap();
    let (code, _, err) = cairn(&["kv", "batch", path], &url).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: key_exists:"), "{err}");
    c.http.get(&url, "b").await.assert_error(404, "not_found");

    std::fs::write(&file, r#"{"operations": []}"#).unwrap();
    let (code, _, err) = cairn(&["kv", "batch", path], &url).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: invalid_batch:"), "{err}");

    let (code, out, _) = cairn(&["kv", "get", "a", "-o", "text"], &url).await;
    assert_eq!((code, out.as_str()), (0, "hello\n"));
    let (code, out, _) = cairn(&["kv", "get", "n", "-o", "jsonl"], &url).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["value"], 1);
    let (code, out, _) = cairn(&["kv", "get", "a"], &url).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["key"], "a", "json is the default: {out}");
}

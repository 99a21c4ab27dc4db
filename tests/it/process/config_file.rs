//! `serve --config FILE`: file settings apply, and CAIRN_* variables override them.

use std::process::Stdio;

use crate::support::{deadline_in, free_port, until, Http};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_settings_apply_and_environment_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("cairn.toml");
    std::fs::write(&cfg, format!("listen = \"127.0.0.1:{port}\"\nmax_value_bytes = 10\nmax-keys-per-namespace = 1\n"))
        .unwrap();
    let mut child = crate::support::cairn_command()
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("CAIRN_MAX_VALUE_BYTES", "20")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = Http::new();
    let url = format!("http://127.0.0.1:{port}");
    let ok = until(deadline_in(15), "the node to listen where the file says", async || {
        let r = http.try_put(&url, "a", &json!({"value": "x".repeat(15)})).await?;
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    assert_eq!(ok.status, 200, "the environment's 20-byte limit beats the file's 10");
    http.put(&url, "a", &json!({"value": "x".repeat(25)})).await.assert_error(413, "value_too_large");
    http.put(&url, "b", &json!({"value": 1})).await.assert_error(403, "quota_exceeded");
    child.kill().unwrap();
    child.wait().unwrap();

    std::fs::write(&cfg, "no_such_setting = 1\n").unwrap();
    let out = crate::support::cairn_command().args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_setting"));
}

//! `cairn bench` against a node that serves no anonymous requests (it has an admin token):
//! with `--token` the run completes without errors; without it, every request is refused and
//! the run fails.

use crate::support::{deadline_in, run_cairn_once, Cluster};
use serde_json::Value;

const ADMIN: &str = "bench-admin-token";

/// Runs `cairn bench` (1 s, 2 clients, puts) against `endpoint`; returns its exit code and
/// its JSON report (`Value::Null` when stdout is not JSON).
async fn bench(endpoint: &str, token: Option<&str>) -> (i32, Value) {
    let mut args: Vec<String> = ["bench", "--endpoints", endpoint, "--workload", "put", "--clients", "2"]
        .into_iter()
        .chain(["--duration", "1s", "--warmup", "0s", "--keys", "100", "--timeout", "5s", "--json"])
        .map(str::to_string)
        .collect();
    if let Some(t) = token {
        args.extend(["--token".to_string(), t.to_string()]);
    }
    let out = run_cairn_once(&args, deadline_in(60)).await;
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_sends_its_token_to_a_node_that_requires_one() {
    let mut c = Cluster::single_with(&["--admin-token", ADMIN]);
    c.wait_for_leader(deadline_in(15)).await;
    let url = c.url(1);

    let (code, report) = bench(&url, Some(ADMIN)).await;
    assert_eq!(code, 0, "bench with --token failed: {report}");
    assert!(report["ops"].as_u64().unwrap_or(0) > 0, "no operation completed: {report}");
    assert_eq!(report["errors"]["total"], 0, "{report}");

    let (code, report) = bench(&url, None).await;
    assert_ne!(code, 0, "bench without a token succeeded against a node that requires one: {report}");
}

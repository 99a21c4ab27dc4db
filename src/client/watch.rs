//! `cairn watch PREFIX`: follows `GET /kv/watch` and prints every change event as one JSON
//! line. When a stream drops, or a node cannot serve it (unreachable, 5xx), it goes on at the
//! next endpoint with `Last-Event-ID` set to the last id it saw, so nothing is skipped or
//! printed twice. A refusal (4xx: bad input, credentials, 410 `compacted`) ends it.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use reqwest::Url;

use super::cli::{error_line, ClientOpts};
use super::error::{exit, exit_code_for_status, ClientError};

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Only keys that start with this (empty: every key of the namespace)
    #[arg(default_value = "")]
    pub prefix: String,
    /// Resume after this log index (an id printed earlier, or a listing's X-Cairn-Index)
    #[arg(long)]
    pub after: Option<u64>,
    /// Include each change's value
    #[arg(long)]
    pub values: bool,
}

/// A stream is never timed out as a whole; a dead node is noticed by the connection breaking.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How one stream ended.
enum End {
    /// Go on at the next endpoint.
    Dropped(String),
    /// Stop with this exit code (the message is printed already).
    Stop(i32),
}

pub async fn run_watch(opts: &ClientOpts, args: WatchArgs) -> i32 {
    let client = match opts.client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", error_line(&e));
            return e.exit_code();
        }
    };
    let mut last = args.after;
    let mut backoff = BACKOFF_MIN;
    for endpoint in client.endpoints().iter().cycle() {
        let before = last;
        match follow(client.http(), endpoint, &args, &mut last).await {
            End::Stop(code) => return code,
            End::Dropped(why) => eprintln!("watch: {endpoint}: {why}; going on at the next endpoint"),
        }
        backoff = if last != before { BACKOFF_MIN } else { (backoff * 2).min(BACKOFF_MAX) };
        tokio::time::sleep(backoff).await;
    }
    exit::UNAVAILABLE
}

fn watch_url(endpoint: &Url, args: &WatchArgs) -> Url {
    let mut url = endpoint.clone();
    url.set_path(&format!("{}/kv/watch", endpoint.path().trim_end_matches('/')));
    url.query_pairs_mut().append_pair("prefix", &args.prefix).append_pair("values", &args.values.to_string());
    url
}

/// One stream from `endpoint`; `last` follows every id seen.
async fn follow(http: &reqwest::Client, endpoint: &Url, args: &WatchArgs, last: &mut Option<u64>) -> End {
    let mut req = http.get(watch_url(endpoint, args)).timeout(STREAM_TIMEOUT).header("accept", "text/event-stream");
    if let Some(id) = last {
        req = req.header("last-event-id", id.to_string());
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return End::Dropped(e.to_string()),
    };
    let status = resp.status().as_u16();
    if status != 200 {
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or("unexpected_status").to_string();
        let message = body["error"]["message"].as_str().unwrap_or("").to_string();
        if status >= 500 {
            return End::Dropped(format!("HTTP {status} {code}: {message}"));
        }
        let e = ClientError::Api { status, code, message, endpoint: endpoint.to_string() };
        eprintln!("{}", error_line(&e));
        return End::Stop(exit_code_for_status(status));
    }
    let mut buf = String::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, "message", String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = match v.trim() {
                        "change" => "change",
                        "progress" => "progress",
                        "compacted" => "compacted",
                        "revoked" => "revoked",
                        _ => "other",
                    };
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            match event {
                "change" => {
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "{data}").and_then(|_| out.flush()).is_err() {
                        return End::Stop(exit::OK); // stdout closed: the reader is done
                    }
                }
                "compacted" => {
                    eprintln!(
                        "error: compacted: the history no longer reaches back to index {} ({data})",
                        last.unwrap_or(0)
                    );
                    return End::Stop(exit::USAGE);
                }
                "revoked" => {
                    eprintln!("error: unauthorized: the token was revoked");
                    return End::Stop(exit::USAGE);
                }
                _ => {}
            }
            if id.is_some() {
                *last = id;
            }
        }
        match resp.chunk().await {
            Ok(Some(bytes)) => buf.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => return End::Dropped("the stream ended".into()),
            Err(e) => return End::Dropped(e.to_string()),
        }
    }
}

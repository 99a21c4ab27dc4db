//! A Server-Sent Events reader for the watch tests: opens a stream and yields its events one
//! by one, each wait bounded by a deadline.

use std::time::Instant;

/// One event: its `id`, `event` name and `data` (comment lines are skipped).
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: serde_json::Value,
}

pub struct SseStream {
    resp: reqwest::Response,
    buf: String,
    ended: bool,
}

/// Opens `url` as a stream. A refusal comes back as `Err((status, body))`.
pub async fn open(url: &str, headers: &[(&str, &str)]) -> Result<SseStream, (u16, serde_json::Value)> {
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let mut req = client.get(url).header("accept", "text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.map_err(|e| (0, serde_json::Value::String(e.to_string())))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        return Err((status, body));
    }
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
    Ok(SseStream { resp, buf: String::new(), ended: false })
}

impl SseStream {
    /// The next event, or `None` when the stream ended or `deadline` passed first.
    pub async fn next(&mut self, deadline: Instant) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
                        id = Some(v.trim().parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                        data.push_str(v);
                    }
                }
                if id.is_none() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
                return Some(SseEvent { id, event, data });
            }
            if self.ended {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(_) => self.ended = true,
            }
        }
    }

    /// Change events until `deadline`, as `(index, [(op, key)])`, stopping after `n` of them.
    pub async fn changes(&mut self, n: usize, deadline: Instant) -> Vec<(u64, Vec<(String, String)>)> {
        let mut out = Vec::new();
        while out.len() < n {
            let Some(e) = self.next(deadline).await else { break };
            if e.event == "change" {
                out.push((e.id.expect("a change has an id"), ops_of(&e.data)));
            }
        }
        out
    }
}

/// `(op, key)` of every change in an event's or a long poll entry's `data`.
pub fn ops_of(data: &serde_json::Value) -> Vec<(String, String)> {
    data["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| (c["op"].as_str().unwrap().to_string(), c["key"].as_str().unwrap().to_string()))
        .collect()
}

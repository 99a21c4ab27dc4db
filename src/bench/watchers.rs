//! `--watchers N`: watch streams held open through a run, spread over the endpoints. Watcher
//! `i` follows the prefix of key `i` alone (key names have a fixed width), so with `--keys N`
//! every write is one event for exactly one watcher; `--idle-watchers` points them at prefixes
//! no write touches, to measure what open watches cost the writes. Counts the change events
//! delivered in the measured window; the delay from apply to send comes from the nodes' own
//! `cairn_watch_delay_seconds` histograms, read before and after.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};

use super::workload::key_name;

/// Watch streams and what they received.
pub struct Watchers {
    pub count: usize,
    pub idle: bool,
    events: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the watchers saw in the measured window.
#[derive(Debug, Clone)]
pub struct WatchSummary {
    pub watchers: usize,
    pub idle: bool,
    pub events: u64,
    pub dropped: u64,
    /// Apply-to-send delay percentiles, as the upper bounds of the nodes' histogram buckets.
    pub delay_p50_ms: Option<f64>,
    pub delay_p99_ms: Option<f64>,
}

fn prefix(i: usize, idle: bool) -> String {
    if idle {
        format!("bench-idle-watch-{i}/")
    } else {
        key_name(i)
    }
}

/// Opens `n` streams, round-robin over `endpoints`; returns once every one is open.
pub async fn open(http: &reqwest::Client, endpoints: &[Url], n: usize, idle: bool) -> Result<Watchers, String> {
    let events = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut url = endpoints[i % endpoints.len()].join("kv/watch").map_err(|e| e.to_string())?;
        url.query_pairs_mut().append_pair("prefix", &prefix(i, idle)).append_pair("values", "false");
        let resp = http.get(url.clone()).send().await.map_err(|e| format!("watch {url}: {e}"))?;
        if resp.status() != 200 {
            return Err(format!("watch {url}: HTTP {}", resp.status()));
        }
        let (events, dropped) = (events.clone(), dropped.clone());
        tasks.push(tokio::spawn(async move {
            let mut resp = resp;
            let mut tail = String::new();
            loop {
                match resp.chunk().await {
                    Ok(Some(bytes)) => {
                        tail.push_str(&String::from_utf8_lossy(&bytes));
                        let n = tail.matches("event: change\n").count() as u64;
                        events.fetch_add(n, Ordering::Relaxed);
                        // Keep only what may be the start of a line split across chunks.
                        let keep = tail.rfind('\n').map_or(0, |i| i + 1);
                        tail.drain(..keep);
                    }
                    _ => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    Ok(Watchers { count: n, idle, events, dropped, tasks })
}

impl Watchers {
    /// The running count of change events received.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.events.clone()
    }

    pub fn close(self) -> u64 {
        for t in &self.tasks {
            t.abort();
        }
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The cumulative `cairn_watch_delay_seconds` buckets summed over `endpoints` (bound, count).
pub async fn delay_buckets(http: &reqwest::Client, endpoints: &[Url]) -> Vec<(f64, u64)> {
    let mut sum: Vec<(f64, u64)> = Vec::new();
    for e in endpoints {
        let Ok(url) = e.join("metrics") else { continue };
        let Ok(resp) = http.get(url).timeout(Duration::from_secs(5)).send().await else { continue };
        let Ok(text) = resp.text().await else { continue };
        let mut i = 0;
        for line in text.lines().filter(|l| l.starts_with("cairn_watch_delay_seconds_bucket{le=\"")) {
            let rest = &line["cairn_watch_delay_seconds_bucket{le=\"".len()..];
            let Some((le, count)) = rest.split_once("\"} ") else { continue };
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
            let count: u64 = count.trim().parse().unwrap_or(0);
            match sum.get_mut(i) {
                Some(slot) => slot.1 += count,
                None => sum.push((bound, count)),
            }
            i += 1;
        }
    }
    sum
}

/// The bucket bound (ms) where the cumulative share of the window's observations reaches `q`.
pub fn quantile_ms(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let window: Vec<(f64, u64)> =
        after.iter().enumerate().map(|(i, (b, c))| (*b, c.saturating_sub(before.get(i).map_or(0, |x| x.1)))).collect();
    let total = window.last()?.1;
    if total == 0 {
        return None;
    }
    window.iter().find(|(_, c)| *c as f64 >= q * total as f64).map(|(b, _)| b * 1_000.0)
}

impl WatchSummary {
    pub fn json(&self, secs: f64) -> Value {
        json!({
            "watchers": self.watchers,
            "idle": self.idle,
            "events": self.events,
            "eventsPerSec": self.events as f64 / secs,
            "dropped": self.dropped,
            "delayP50MsAtMost": self.delay_p50_ms,
            "delayP99MsAtMost": self.delay_p99_ms,
        })
    }

    pub fn text(&self, secs: f64) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("≤{v}ms"));
        format!(
            "watch: {} {}watchers, {} events ({:.1}/s), apply→send p50 {} p99 {}, {} streams dropped",
            self.watchers,
            if self.idle { "idle " } else { "" },
            self.events,
            self.events as f64 / secs,
            ms(self.delay_p50_ms),
            ms(self.delay_p99_ms),
            self.dropped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_windows_bucket_deltas() {
        let before = vec![(0.001, 10), (0.01, 10), (f64::INFINITY, 10)];
        let after = vec![(0.001, 60), (0.01, 109), (f64::INFINITY, 110)];
        // Window: 50 at ≤1 ms, 49 more at ≤10 ms, 1 more above.
        assert_eq!(quantile_ms(&before, &after, 0.5), Some(1.0));
        assert_eq!(quantile_ms(&before, &after, 0.99), Some(10.0));
        assert_eq!(quantile_ms(&after, &after, 0.5), None);
        assert_eq!(prefix(3, false), key_name(3));
        assert!(prefix(3, true).starts_with("bench-idle-watch-"));
    }
}

//! Process-wide counters and histograms, rendered in the Prometheus text format by
//! `api/observe.rs`. A global rather than per-node state: the WAL writer thread and the state
//! machine record into it without plumbing, and one process runs one node.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

/// Latency buckets in seconds, from a fast fsync to a slow snapshot.
const BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub struct Histogram {
    counts: Vec<AtomicU64>,
    /// Sum in nanoseconds, to stay integral.
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

pub struct Metrics {
    /// (route, status) → count. A std mutex: held for one map update.
    pub requests: Mutex<HashMap<(String, u16), u64>>,
    pub request_seconds: Mutex<HashMap<String, std::sync::Arc<Histogram>>>,
    pub wal_fsync: Histogram,
    pub snapshot_build: Histogram,
    pub snapshots_built: AtomicU64,
    pub snapshots_installed: AtomicU64,
    pub expired_keys: AtomicU64,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: Mutex::new(HashMap::new()),
    request_seconds: Mutex::new(HashMap::new()),
    wal_fsync: Histogram::new(),
    snapshot_build: Histogram::new(),
    snapshots_built: AtomicU64::new(0),
    snapshots_installed: AtomicU64::new(0),
    expired_keys: AtomicU64::new(0),
});

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, d: std::time::Duration) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route.to_string(), status)).or_insert(0) += 1;
        let h = self
            .request_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.to_string())
            .or_insert_with(|| std::sync::Arc::new(Histogram::new()))
            .clone();
        h.observe(d);
    }

    /// Renders the process-wide part; `api/observe.rs` adds the per-node gauges.
    pub fn render(&self, out: &mut String) {
        out.push_str("# TYPE cairn_http_requests_total counter\n");
        let mut reqs: Vec<_> =
            self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect();
        reqs.sort();
        for ((route, status), n) in reqs {
            let _ = writeln!(out, "cairn_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# TYPE cairn_http_request_duration_seconds histogram\n");
        let mut hs: Vec<_> = self
            .request_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        hs.sort_by(|a, b| a.0.cmp(&b.0));
        for (route, h) in hs {
            h.render(out, "cairn_http_request_duration_seconds", &format!("route=\"{route}\""));
        }
        out.push_str("# TYPE cairn_wal_fsync_duration_seconds histogram\n");
        self.wal_fsync.render(out, "cairn_wal_fsync_duration_seconds", "");
        out.push_str("# TYPE cairn_snapshot_build_duration_seconds histogram\n");
        self.snapshot_build.render(out, "cairn_snapshot_build_duration_seconds", "");
        let counters = [
            ("cairn_snapshots_built_total", &self.snapshots_built),
            ("cairn_snapshots_installed_total", &self.snapshots_installed),
            ("cairn_expired_keys_total", &self.expired_keys),
        ];
        for (name, v) in counters {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2"), "{out}");
        assert!(out.contains("x_count 2"), "{out}");
    }
}

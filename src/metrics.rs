//! Process-wide counters and histograms, rendered in the Prometheus text format by
//! `api/observe.rs`. A global rather than per-node state: the WAL writer and the state machine
//! record into it without plumbing, and one process runs one node.
//!
//! Hand-written rather than on `prometheus-client`: an A/B with `cairn bench` (docs/performance.md,
//! "Tried and not kept") did not show the crate free of cost; per request it took about twice
//! the time alone (a `String` label and a mutex per histogram against a read lock and atomics).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

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

/// One route's requests: a latency histogram and a counter per status code.
struct RouteStats {
    seconds: Histogram,
    /// Indexed by status - 100; HTTP statuses are 100..=599.
    by_status: Vec<AtomicU64>,
}

impl RouteStats {
    fn new() -> Self {
        RouteStats { seconds: Histogram::new(), by_status: (100..600).map(|_| AtomicU64::new(0)).collect() }
    }

    fn record(&self, status: u16, d: std::time::Duration) {
        self.seconds.observe(d);
        if let Some(n) = status.checked_sub(100).and_then(|i| self.by_status.get(usize::from(i))) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Metrics {
    /// Route → its stats. Every request records here, so the hot path takes only the read lock
    /// and touches atomics; the write lock is taken once per route, the first time it is seen.
    routes: RwLock<HashMap<String, Arc<RouteStats>>>,
    pub wal_fsync: Histogram,
    pub snapshot_build: Histogram,
    pub snapshots_built: AtomicU64,
    pub snapshots_installed: AtomicU64,
    pub expired_keys: AtomicU64,
    /// Loads of the TLS files after start-up, by outcome (`tls/reload.rs`).
    pub tls_reloads_ok: AtomicU64,
    pub tls_reloads_failed: AtomicU64,
    /// notAfter of the certificate being served, in Unix seconds; 0 (not rendered) without TLS
    /// or when it could not be read.
    pub tls_cert_not_after: AtomicU64,
    /// Watches (`api/watch.rs`): open now, change events sent, catch-ups from the history after
    /// falling behind the live feed, resumes refused as compacted, and the delay from apply to
    /// send of live events.
    pub watchers_open: AtomicU64,
    pub watch_events: AtomicU64,
    pub watch_catchups: AtomicU64,
    pub watch_compacted: AtomicU64,
    pub watch_delay: Histogram,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        Metrics {
            routes: RwLock::new(HashMap::new()),
            wal_fsync: Histogram::new(),
            snapshot_build: Histogram::new(),
            snapshots_built: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            expired_keys: AtomicU64::new(0),
            tls_reloads_ok: AtomicU64::new(0),
            tls_reloads_failed: AtomicU64::new(0),
            tls_cert_not_after: AtomicU64::new(0),
            watchers_open: AtomicU64::new(0),
            watch_events: AtomicU64::new(0),
            watch_catchups: AtomicU64::new(0),
            watch_compacted: AtomicU64::new(0),
            watch_delay: Histogram::new(),
        }
    }

    pub fn record_request(&self, route: &str, status: u16, d: std::time::Duration) {
        if let Some(stats) = self.routes.read().unwrap_or_else(|e| e.into_inner()).get(route) {
            stats.record(status, d);
            return;
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.entry(route.to_string()).or_insert_with(|| Arc::new(RouteStats::new())).record(status, d);
    }

    /// Renders the process-wide part; `api/observe.rs` adds the per-node gauges.
    pub fn render(&self, out: &mut String) {
        let mut routes: Vec<(String, Arc<RouteStats>)> =
            self.routes.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# TYPE cairn_http_requests_total counter\n");
        for (route, stats) in &routes {
            for (status, n) in (100u16..).zip(&stats.by_status) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "cairn_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
                }
            }
        }
        out.push_str("# TYPE cairn_http_request_duration_seconds histogram\n");
        for (route, stats) in &routes {
            stats.seconds.render(out, "cairn_http_request_duration_seconds", &format!("route=\"{route}\""));
        }
        out.push_str("# TYPE cairn_wal_fsync_duration_seconds histogram\n");
        self.wal_fsync.render(out, "cairn_wal_fsync_duration_seconds", "");
        out.push_str("# TYPE cairn_snapshot_build_duration_seconds histogram\n");
        self.snapshot_build.render(out, "cairn_snapshot_build_duration_seconds", "");
        let counters = [
            ("cairn_snapshots_built_total", &self.snapshots_built),
            ("cairn_snapshots_installed_total", &self.snapshots_installed),
            ("cairn_expired_keys_total", &self.expired_keys),
            ("cairn_watch_events_total", &self.watch_events),
            ("cairn_watch_catchups_total", &self.watch_catchups),
            ("cairn_watch_compacted_total", &self.watch_compacted),
        ];
        for (name, v) in counters {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        }
        let open = self.watchers_open.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE cairn_watchers gauge\ncairn_watchers {open}");
        out.push_str("# TYPE cairn_watch_delay_seconds histogram\n");
        self.watch_delay.render(out, "cairn_watch_delay_seconds", "");
        out.push_str("# TYPE cairn_tls_reloads_total counter\n");
        for (result, v) in [("ok", &self.tls_reloads_ok), ("error", &self.tls_reloads_failed)] {
            let _ = writeln!(out, "cairn_tls_reloads_total{{result=\"{result}\"}} {}", v.load(Ordering::Relaxed));
        }
        let not_after = self.tls_cert_not_after.load(Ordering::Relaxed);
        if not_after > 0 {
            let name = "cairn_tls_cert_not_after_seconds";
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {not_after}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_are_counted_per_route_and_status() {
        let m = Metrics::new();
        for status in [200, 200, 404, 999] {
            m.record_request("/kv/items/{key}", status, Duration::from_millis(1));
        }
        m.record_request("/health", 200, Duration::from_micros(10));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("cairn_http_requests_total{route=\"/kv/items/{key}\",status=\"200\"} 2\n"), "{out}");
        assert!(out.contains("cairn_http_requests_total{route=\"/kv/items/{key}\",status=\"404\"} 1\n"), "{out}");
        assert!(out.contains("cairn_http_requests_total{route=\"/health\",status=\"200\"} 1\n"), "{out}");
        assert!(!out.contains("status=\"999\""), "{out}");
        // The histogram counts every request, whatever its status.
        assert!(out.contains("cairn_http_request_duration_seconds_count{route=\"/kv/items/{key}\"} 4\n"), "{out}");
    }

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

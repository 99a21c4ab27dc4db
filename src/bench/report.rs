//! Recording results (HDR histograms, error counts) and rendering them as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::workload::{OpKind, Workload};

/// Latencies are recorded in microseconds from 1 µs to 60 s with 3 significant digits, so
/// p99.9 is exact to 0.1%. Anything slower saturates at 60 s, far beyond any request timeout.
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 60_000_000;
const SIGFIGS: u8 = 3;

/// How one operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A CAS whose condition failed because another client wrote first: a correct answer under
    /// contention, so it is counted and timed but is not an error.
    Conflict,
    /// Anything else, keyed for the error table: `"503 no_leader"`, `"timeout"`, `"miss"`, ...
    Error(String),
}

/// The key under which a read of a key that should exist but does not is counted.
pub const MISS: &str = "miss";

fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; failure here is a programming error.
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIGS).expect("valid histogram bounds")
}

/// Error counts keyed like [`Outcome::Error`]: `"503 no_leader"` → 13.
pub type ErrorCounts = BTreeMap<String, u64>;

/// What one op kind recorded.
#[derive(Debug)]
struct KindRecord {
    kind: OpKind,
    latency: Histogram<u64>,
    /// Kept per kind so a mix shows which of its ops failed (reads or writes).
    errors: ErrorCounts,
}

/// Everything measured in the measurement window (warm-up excluded).
#[derive(Debug)]
pub struct Recorder {
    all: Histogram<u64>,
    by_kind: Vec<KindRecord>,
    errors: ErrorCounts,
    conflicts: u64,
}

impl Recorder {
    pub fn new(workload: Workload) -> Recorder {
        let by_kind = workload
            .op_kinds()
            .into_iter()
            .map(|kind| KindRecord { kind, latency: new_histogram(), errors: ErrorCounts::new() })
            .collect();
        Recorder { all: new_histogram(), by_kind, errors: ErrorCounts::new(), conflicts: 0 }
    }

    /// Successful ops and conflicts are timed; errors are only counted, so a burst of fast
    /// refusals cannot make the latency figures look better.
    pub fn record(&mut self, kind: OpKind, outcome: &Outcome, latency: Duration) {
        let of_kind = self.by_kind.iter_mut().find(|r| r.kind == kind);
        match outcome {
            Outcome::Ok | Outcome::Conflict => {
                if *outcome == Outcome::Conflict {
                    self.conflicts += 1;
                }
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(LOWEST_US);
                self.all.saturating_record(us);
                if let Some(r) = of_kind {
                    r.latency.saturating_record(us);
                }
            }
            Outcome::Error(key) => {
                count(&mut self.errors, key);
                if let Some(r) = of_kind {
                    count(&mut r.errors, key);
                }
            }
        }
    }
}

fn count(errors: &mut ErrorCounts, key: &str) {
    *errors.entry(key.to_string()).or_insert(0) += 1;
}

/// `3 (503 no_leader: 2, timeout: 1)`, or `none`.
fn fmt_errors(errors: &ErrorCounts) -> String {
    if errors.is_empty() {
        return "none".into();
    }
    let list: Vec<String> = errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    format!("{} ({})", errors.values().sum::<u64>(), list.join(", "))
}

/// Latency summary of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub ops: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Summary {
        Summary {
            ops: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }

    fn json(&self, secs: f64) -> Value {
        json!({
            "ops": self.ops,
            "throughput": round2(self.ops as f64 / secs),
            "latencyMs": {
                "p50": ms(self.p50), "p90": ms(self.p90), "p99": ms(self.p99),
                "p999": ms(self.p999), "max": ms(self.max), "mean": round3(self.mean / 1000.0),
            },
        })
    }
}

/// What the run was, for the report header.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub target: String,
    pub workload: Workload,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rate: Option<f64>,
    pub keys: usize,
    pub value_size: usize,
    /// Where the measured requests went, e.g. `["http://127.0.0.1:7001/"]`.
    pub endpoints: Vec<String>,
    /// How they were chosen: `leader`, `follower` or `round-robin`.
    pub routing: String,
    /// Open loop only: scheduled sends that were never issued because the run ended first.
    pub unsent: u64,
}

/// The finished result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub info: RunInfo,
    pub all: Summary,
    pub by_kind: Vec<(OpKind, Summary)>,
    /// By status and code, over all op kinds.
    pub errors: ErrorCounts,
    /// The same, for each op kind of the workload (every kind listed, failed or not).
    pub errors_by_kind: Vec<(OpKind, ErrorCounts)>,
    pub conflicts: u64,
    /// With `--watchers`: what the watch streams received.
    pub watch: Option<super::watchers::WatchSummary>,
}

impl Report {
    pub fn new(info: RunInfo, rec: &Recorder) -> Report {
        Report {
            info,
            all: Summary::of(&rec.all),
            by_kind: rec.by_kind.iter().map(|r| (r.kind, Summary::of(&r.latency))).collect(),
            errors: rec.errors.clone(),
            errors_by_kind: rec.by_kind.iter().map(|r| (r.kind, r.errors.clone())).collect(),
            conflicts: rec.conflicts,
            watch: None,
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    fn secs(&self) -> f64 {
        self.info.duration.as_secs_f64().max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        let i = &self.info;
        let secs = self.secs();
        let mut v = json!({
            "target": i.target,
            "workload": i.workload.to_string(),
            "clients": i.clients,
            "durationSecs": i.duration.as_secs_f64(),
            "warmupSecs": i.warmup.as_secs_f64(),
            "rate": i.rate,
            "keys": i.keys,
            "valueSize": i.value_size,
            "endpoints": i.endpoints,
            "routing": i.routing,
        });
        let all = self.all.json(secs);
        if let (Some(obj), Some(all)) = (v.as_object_mut(), all.as_object()) {
            obj.extend(all.iter().map(|(k, v)| (k.clone(), v.clone())));
            let by_op: serde_json::Map<String, Value> =
                self.by_kind.iter().map(|(k, s)| (k.name().to_string(), s.json(secs))).collect();
            obj.insert("byOp".into(), Value::Object(by_op));
            let errors_by_op: serde_json::Map<String, Value> =
                self.errors_by_kind.iter().map(|(k, e)| (k.name().to_string(), json!(e))).collect();
            obj.insert(
                "errors".into(),
                json!({ "total": self.error_total(), "byStatus": self.errors, "byOp": errors_by_op }),
            );
            obj.insert("casConflicts".into(), json!(self.conflicts));
            obj.insert("unsent".into(), json!(i.unsent));
            if let Some(w) = &self.watch {
                obj.insert("watch".into(), w.json(secs));
            }
        }
        v
    }

    /// The human report: a header, one latency row per op kind (plus `all` for mixes), errors.
    pub fn to_text(&self) -> String {
        let i = &self.info;
        let mut out = String::new();
        let rate = match i.rate {
            Some(r) => format!("open loop at {r} ops/s (latency from intended send time)"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "target {} · workload {} · {} clients · {} measured after {} warm-up · {} keys · {}-byte values · {}",
            i.target,
            i.workload,
            i.clients,
            humantime::format_duration(i.duration),
            humantime::format_duration(i.warmup),
            i.keys,
            i.value_size,
            rate
        );
        let _ = writeln!(out, "endpoints ({}): {}", i.routing, i.endpoints.join(", "));
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op", "ops", "ops/s", "p50", "p90", "p99", "p99.9", "max"
        );
        let mut rows: Vec<(&str, &Summary)> = self.by_kind.iter().map(|(k, s)| (k.name(), s)).collect();
        if rows.len() > 1 {
            rows.push(("all", &self.all));
        }
        for (name, s) in rows {
            let _ = writeln!(
                out,
                "{:<10} {:>9} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                s.ops,
                s.ops as f64 / self.secs(),
                fmt_us(s.p50),
                fmt_us(s.p90),
                fmt_us(s.p99),
                fmt_us(s.p999),
                fmt_us(s.max)
            );
        }
        if self.conflicts > 0 {
            let _ = writeln!(out, "cas conflicts (counted as ops, not errors): {}", self.conflicts);
        }
        if i.unsent > 0 {
            let _ = writeln!(out, "rate not sustained: {} scheduled requests were never sent", i.unsent);
        }
        if let Some(w) = &self.watch {
            let _ = writeln!(out, "{}", w.text(self.secs()));
        }
        let _ = writeln!(out, "errors: {}", fmt_errors(&self.errors));
        // A mix also says which of its ops failed: 503s on reads and on writes mean different
        // things.
        if self.errors_by_kind.len() > 1 && !self.errors.is_empty() {
            for (kind, errors) in &self.errors_by_kind {
                let _ = writeln!(out, "  {:<9} {}", kind.name(), fmt_errors(errors));
            }
        }
        out
    }
}

/// A latency in µs for humans: `850µs`, `8.91ms`, `1.20s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

fn ms(us: u64) -> f64 {
    round3(us as f64 / 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::Mix;

    fn info(workload: Workload) -> RunInfo {
        RunInfo {
            target: "cairn".into(),
            workload,
            clients: 4,
            duration: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            rate: None,
            keys: 10,
            value_size: 100,
            endpoints: vec!["http://127.0.0.1:7001/".into()],
            routing: "leader".into(),
            unsent: 0,
        }
    }

    #[test]
    fn formats_latencies_in_readable_units() {
        assert_eq!(fmt_us(850), "850µs");
        assert_eq!(fmt_us(8_912), "8.91ms");
        assert_eq!(fmt_us(1_200_000), "1.20s");
    }

    #[test]
    fn errors_are_counted_not_timed() {
        let mut rec = Recorder::new(Workload::Put);
        rec.record(OpKind::Put, &Outcome::Ok, Duration::from_millis(2));
        rec.record(OpKind::Put, &Outcome::Error("503 no_leader".into()), Duration::from_millis(1));
        rec.record(OpKind::Put, &Outcome::Error("503 no_leader".into()), Duration::from_millis(1));
        rec.record(OpKind::Put, &Outcome::Error("timeout".into()), Duration::from_secs(15));
        let r = Report::new(info(Workload::Put), &rec);
        assert_eq!(r.all.ops, 1);
        assert_eq!(r.error_total(), 3);
        assert_eq!(r.errors["503 no_leader"], 2);
        assert!(r.all.max < 3_000, "max {}", r.all.max);
        let text = r.to_text();
        assert!(text.contains("errors: 3 (503 no_leader: 2, timeout: 1)"), "{text}");
        // One op kind: its errors are the total, so no per-op lines.
        assert!(!text.contains("\n  put"), "{text}");
        assert_eq!(r.to_json()["errors"]["byOp"]["put"]["503 no_leader"], 2);
    }

    #[test]
    fn a_mix_breaks_its_errors_down_by_op_in_text_and_json() {
        let mix = Workload::Mixed(Mix { reads: 2, writes: 1 });
        let mut rec = Recorder::new(mix);
        rec.record(OpKind::Get, &Outcome::Ok, Duration::from_millis(1));
        for _ in 0..13 {
            rec.record(OpKind::Get, &Outcome::Error("503 no_leader".into()), Duration::from_millis(1));
        }
        rec.record(OpKind::Put, &Outcome::Error("504 unknown_outcome".into()), Duration::from_secs(10));
        let r = Report::new(info(mix), &rec);
        let text = r.to_text();
        assert!(text.contains("errors: 14 (503 no_leader: 13, 504 unknown_outcome: 1)\n"), "{text}");
        assert!(text.contains("\n  get       13 (503 no_leader: 13)\n"), "{text}");
        assert!(text.contains("\n  put       1 (504 unknown_outcome: 1)\n"), "{text}");
        let v = r.to_json();
        assert_eq!(v["errors"]["total"], 14);
        assert_eq!(v["errors"]["byStatus"]["503 no_leader"], 13);
        assert_eq!(v["errors"]["byOp"]["get"]["503 no_leader"], 13);
        assert_eq!(v["errors"]["byOp"]["put"]["504 unknown_outcome"], 1);
        assert!(v["errors"]["byOp"]["get"].get("504 unknown_outcome").is_none());
    }

    #[test]
    fn a_clean_mix_lists_every_op_with_no_errors_in_json_only() {
        let mix = Workload::Mixed(Mix { reads: 1, writes: 1 });
        let mut rec = Recorder::new(mix);
        rec.record(OpKind::Get, &Outcome::Ok, Duration::from_millis(1));
        let r = Report::new(info(mix), &rec);
        assert!(r.to_text().ends_with("errors: none\n"), "{}", r.to_text());
        let v = r.to_json();
        assert_eq!(v["errors"]["byOp"], serde_json::json!({"get": {}, "put": {}}));
    }

    #[test]
    fn mixed_report_has_a_row_per_kind_and_a_total() {
        let mut rec = Recorder::new(Workload::Mixed(Mix { reads: 9, writes: 1 }));
        for _ in 0..9 {
            rec.record(OpKind::Get, &Outcome::Ok, Duration::from_micros(500));
        }
        rec.record(OpKind::Put, &Outcome::Ok, Duration::from_millis(10));
        let r = Report::new(info(Workload::Mixed(Mix { reads: 9, writes: 1 })), &rec);
        let text = r.to_text();
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(['g', 'p', 'a'])).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].starts_with("get") && rows[0].contains(" 9 "), "{text}");
        assert!(rows[2].starts_with("all") && rows[2].contains(" 10 "), "{text}");
        assert!(text.contains("errors: none"));
    }

    #[test]
    fn json_report_is_machine_readable() {
        let mut rec = Recorder::new(Workload::Cas);
        rec.record(OpKind::Cas, &Outcome::Ok, Duration::from_millis(4));
        rec.record(OpKind::Cas, &Outcome::Conflict, Duration::from_millis(4));
        rec.record(OpKind::Cas, &Outcome::Error(MISS.into()), Duration::from_millis(4));
        let v = Report::new(info(Workload::Cas), &rec).to_json();
        assert_eq!(v["workload"], "cas");
        assert_eq!(v["ops"], 2);
        assert_eq!(v["throughput"], 1.0);
        assert_eq!(v["casConflicts"], 1);
        assert_eq!(v["errors"]["total"], 1);
        assert_eq!(v["errors"]["byStatus"]["miss"], 1);
        assert_eq!(v["byOp"]["cas"]["ops"], 2);
        let p50 = v["latencyMs"]["p50"].as_f64().unwrap();
        assert!((3.99..4.01).contains(&p50), "p50 {p50}");
        assert!(v["rate"].is_null());
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut rec = Recorder::new(Workload::Get);
        for ms in 1..=1000u64 {
            rec.record(OpKind::Get, &Outcome::Ok, Duration::from_micros(ms * 1000));
        }
        let r = Report::new(info(Workload::Get), &rec);
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(r.all.p50, 500_000), "p50 {}", r.all.p50);
        assert!(near(r.all.p99, 990_000), "p99 {}", r.all.p99);
        assert!(near(r.all.max, 1_000_000), "max {}", r.all.max);
    }
}

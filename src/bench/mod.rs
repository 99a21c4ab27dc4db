//! `cairn bench`: a load generator for Cairn and, with `--target etcd`, for etcd's v3 JSON
//! gateway, so both systems are measured by the same client.
//!
//! # Layout
//! - `workload`: workload names, the read/write mix, key choice, the per-client random generator
//! - `target`: the request bytes of each op for Cairn and for etcd, and what responses mean
//! - `discovery`: leader/follower discovery, and waiting for followers to apply the preload
//! - `driver`: preload, the client tasks (closed or open loop) and the progress line
//! - `report`: HDR histograms, error counts, and the text and JSON reports
//! - `watchers`: `--watchers`: watch streams held open through the run, and what they received
//! - `ceiling`: `cairn ceiling`, the same HTTP path with no storage, to measure the machine's ceiling

pub mod ceiling;
mod discovery;
mod driver;
mod report;
mod target;
mod watchers;
mod workload;

use std::sync::Arc;
use std::time::Duration;

use report::{Report, RunInfo};
use target::Target;
use workload::Workload;

use driver::{Client, Schedule};
use target::Routes;

/// Exit code for bad flags or an unsupported combination (the CLI's usage code).
const EXIT_USAGE: i32 = 2;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchOpts {
    /// Nodes to drive, comma-separated (`host:port` means `http://host:port`).
    #[arg(long, env = "CAIRN_ENDPOINTS", default_value = "http://127.0.0.1:7001")]
    pub endpoints: String,
    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before measuring starts; not recorded.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// put | get | get-stale | mixed:READS/WRITES | incr | cas
    #[arg(long, default_value = "put")]
    pub workload: Workload,
    /// Size of the key space; each op picks a key uniformly.
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
    /// Bytes of each written value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Open loop: total requests per second across all clients. Latency is then measured from
    /// each request's scheduled send time (corrected for coordinated omission).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value = "cairn")]
    pub target: Target,
    /// Write every key before measuring [default: on for get, get-stale and mixed].
    #[arg(long, conflicts_with = "no_preload")]
    pub preload: bool,
    #[arg(long)]
    pub no_preload: bool,
    /// Spread clients over all endpoints instead of sending to the leader (or, for get-stale,
    /// to one follower).
    #[arg(long)]
    pub no_leader_discovery: bool,
    /// Per-request timeout; a request that takes longer counts as a `timeout` error.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Path of etcd's JSON gateway (`/v3` for etcd 3.4+; 3.3 used `/v3beta`).
    #[arg(long, default_value = "/v3")]
    pub etcd_prefix: String,
    /// Seed for key and op choice [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// PEM CA certificate to trust for https:// endpoints [default: the system's trust roots].
    #[arg(long, env = "CAIRN_CACERT", value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
    /// Access token, sent as `Authorization: Bearer` (Cairn only): needed by any cluster that
    /// has an admin token, since it serves no anonymous requests.
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Threads driving the clients. One is the default: the load generator shares the machine
    /// with what it measures, and on this project's 2-core machine one thread drove ~40,000
    /// requests/s with less CPU than two (docs/performance.md).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Watch streams to hold open through the run (Cairn only), round-robin over the
    /// endpoints. Watcher i follows key i's prefix, so with --keys equal to it every write is
    /// one event; the report adds events delivered and the nodes' apply-to-send delay.
    #[arg(long, default_value_t = 0)]
    pub watchers: usize,
    /// Point the watchers at prefixes no write touches: what open watches cost the writes.
    #[arg(long, requires = "watchers")]
    pub idle_watchers: bool,
}

impl BenchOpts {
    fn validate(&self) -> Result<(), String> {
        if self.clients == 0 || self.keys == 0 || self.threads == 0 {
            return Err("--clients, --keys and --threads must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err("--rate must be a positive number of requests per second".into());
            }
        }
        if self.target == Target::Etcd && matches!(self.workload, Workload::Incr | Workload::Cas) {
            return Err(format!("workload {} is not supported with --target etcd", self.workload));
        }
        if self.watchers > 0 && self.target == Target::Etcd {
            return Err("--watchers is for Cairn's watch (--target cairn)".into());
        }
        if self.watchers > self.keys && !self.idle_watchers {
            return Err("--watchers follow one key each: at most --keys of them (or --idle-watchers)".into());
        }
        Ok(())
    }

    fn wants_preload(&self) -> bool {
        !self.no_preload && (self.preload || self.workload.reads_existing_keys())
    }
}

/// Runs a benchmark and prints its report (stdout) and progress (stderr). Returns 0 when the run
/// completed with at least one op and no errors, 1 when any op failed, 2 for bad usage.
pub async fn run(opts: BenchOpts) -> i32 {
    if let Err(e) = opts.validate() {
        eprintln!("error: {e}");
        return EXIT_USAGE;
    }
    let endpoints = match crate::client::parse_endpoints(&opts.endpoints) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    match run_checked(&opts, &endpoints).await {
        Ok(report) => {
            if opts.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            i32::from(report.error_total() > 0 || report.all.ops == 0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn run_checked(opts: &BenchOpts, endpoints: &[reqwest::Url]) -> Result<Report, String> {
    let tls = if opts.cacert.is_some() || endpoints.iter().any(|e| e.scheme() == "https") {
        Some(crate::tls::client_config(opts.cacert.as_deref()).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let token = match (&opts.token, opts.target) {
        (Some(t), Target::Cairn) => Some(driver::bearer(t)?),
        _ => None,
    };
    let conn = driver::ConnSetup { tls: tls.as_ref(), token: token.as_ref() };
    let control = driver::http_client(Duration::from_secs(5), &conn)?;
    let discover = !opts.no_leader_discovery;
    let plan = discovery::plan(&control, opts.target, endpoints, opts.workload, discover, &opts.etcd_prefix).await?;
    let kinds = opts.workload.op_kinds();
    let routes_for = |url: &reqwest::Url| {
        Arc::new(Routes::new(opts.target, url, opts.keys, opts.value_size, &kinds, &opts.etcd_prefix))
    };
    if opts.wants_preload() {
        eprintln!("bench: preloading {} keys through {}", opts.keys, plan.write);
        let took =
            driver::preload(&plan.write, routes_for(&plan.write), opts.keys, opts.clients.min(64), opts.timeout, &conn)
                .await?;
        eprintln!("bench: preload took {:.1}s", took.as_secs_f64());
        if opts.workload == Workload::GetStale {
            discovery::wait_for_followers(&control, opts.target, &plan, &opts.etcd_prefix, Duration::from_secs(15))
                .await?;
        }
    }
    let routes: Vec<Arc<Routes>> = plan.targets.iter().map(routes_for).collect();
    let base_seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let mut clients = Vec::with_capacity(opts.clients);
    for i in 0..opts.clients {
        clients.push(Client {
            seed: base_seed.wrapping_add((i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)),
            routes: routes[i % routes.len()].clone(),
            conn: conn.open(&plan.targets[i % plan.targets.len()], opts.timeout)?,
        });
    }
    eprintln!(
        "bench: {} {} with {} clients against {} ({}), seed {base_seed}",
        opts.target.name(),
        opts.workload,
        opts.clients,
        plan.targets.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", "),
        plan.routing,
    );
    let watching = if opts.watchers > 0 {
        let streams = driver::http_client(Duration::from_secs(365 * 24 * 3600), &conn)?;
        let w = watchers::open(&streams, endpoints, opts.watchers, opts.idle_watchers).await?;
        eprintln!("bench: {} watch streams open", w.count);
        Some(w)
    } else {
        None
    };
    // The watchers' measured window: the same warm-up and duration as the clients'.
    let window = watching.as_ref().map(|w| {
        let (events, control, endpoints, warmup, duration) =
            (w.counter(), control.clone(), endpoints.to_vec(), opts.warmup, opts.duration);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            let (e0, b0) = (
                events.load(std::sync::atomic::Ordering::Relaxed),
                watchers::delay_buckets(&control, &endpoints).await,
            );
            tokio::time::sleep(duration).await;
            let (e1, b1) = (
                events.load(std::sync::atomic::Ordering::Relaxed),
                watchers::delay_buckets(&control, &endpoints).await,
            );
            (e1.saturating_sub(e0), b0, b1)
        })
    });
    let schedule = Arc::new(Schedule::new(opts.warmup, opts.duration, opts.rate));
    let recorder = driver::drive(opts.workload, opts.keys, schedule.clone(), clients).await;
    let watch = match (watching, window) {
        (Some(w), Some(window)) => {
            let (events, before, after) = window.await.map_err(|e| e.to_string())?;
            let (count, idle) = (w.count, w.idle);
            let dropped = w.close();
            Some(watchers::WatchSummary {
                watchers: count,
                idle,
                events,
                dropped,
                delay_p50_ms: watchers::quantile_ms(&before, &after, 0.5),
                delay_p99_ms: watchers::quantile_ms(&before, &after, 0.99),
            })
        }
        _ => None,
    };
    let info = RunInfo {
        target: opts.target.name().into(),
        workload: opts.workload,
        clients: opts.clients,
        duration: opts.duration,
        warmup: opts.warmup,
        rate: opts.rate,
        keys: opts.keys,
        value_size: opts.value_size,
        endpoints: plan.targets.iter().map(|u| u.to_string()).collect(),
        routing: plan.routing.clone(),
        unsent: schedule.unsent(),
    };
    let mut report = Report::new(info, &recorder);
    report.watch = watch;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::workload::Mix;
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: BenchOpts,
    }

    fn parse(args: &[&str]) -> Result<BenchOpts, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.opts)
    }

    #[test]
    fn flags_parse_with_durations_and_mixes() {
        let o = parse(&["--endpoints", "a:1,b:2", "--duration", "3s", "--workload", "mixed:90/10", "--rate", "500"])
            .unwrap();
        assert_eq!(o.duration, Duration::from_secs(3));
        assert_eq!(o.workload, Workload::Mixed(Mix { reads: 90, writes: 10 }));
        assert_eq!(o.rate, Some(500.0));
        assert_eq!(o.target, Target::Cairn);
        assert!(parse(&["--workload", "mixed:x"]).is_err());
        assert!(parse(&["--preload", "--no-preload"]).is_err());
    }

    #[test]
    fn preload_defaults_follow_the_workload_and_flags_override() {
        assert!(parse(&["--workload", "get"]).unwrap().wants_preload());
        assert!(!parse(&["--workload", "get", "--no-preload"]).unwrap().wants_preload());
        assert!(!parse(&["--workload", "put"]).unwrap().wants_preload());
        assert!(parse(&["--workload", "put", "--preload"]).unwrap().wants_preload());
    }

    #[test]
    fn etcd_rejects_workloads_it_has_no_equivalent_for() {
        let o = parse(&["--target", "etcd", "--workload", "incr"]).unwrap();
        assert!(o.validate().is_err());
        let o = parse(&["--target", "etcd", "--workload", "get-stale"]).unwrap();
        assert!(o.validate().is_ok());
        assert!(parse(&["--rate", "0"]).unwrap().validate().is_err());
        assert!(parse(&["--clients", "0"]).unwrap().validate().is_err());
    }
}

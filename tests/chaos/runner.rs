//! One run end to end. `execute` (the parent, outside the namespace) creates the run
//! directory and the namespace, re-executes this test binary inside it with `ip netns exec`
//! and waits for it with a deadline; `run_here` (the child, or the parent itself when no
//! namespace is possible) starts the cluster, drives workloads and nemesis, heals, reads the
//! final state, and checks the history.
//!
//! Why a re-exec: a network namespace belongs to a thread, and std offers no `setns`; running
//! the whole run (nodes, clients, iptables) in one child process inside the namespace keeps
//! the clients, the nodes and the rules in the same network without extra dependencies.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::checks::{self, CheckResult};
use super::cluster::Cluster;
use super::finale;
use super::history::{self, Clock, Op, Workload};
use super::lock;
use super::lockcheck;
use super::nemesis::Nemesis;
use super::netns::{self, Firewall, NetNs};
use super::plan::{FaultKind, FaultStep, Plan};
use super::proc::wait_deadline;
use super::report::{self, RunResult};
use super::watch;
use super::watchcheck;
use super::workload::{self, Ctx};

/// Environment variable that turns a test process into the child of a run (its run dir).
pub const CHILD_ENV: &str = "CAIRN_CHAOS_CHILD";
/// Port every node listens on inside a namespace (each node has its own address).
const NS_PORT: u16 = 7000;
/// Deadlines of the phases around the workload.
const FORM_DEADLINE: Duration = Duration::from_secs(30);
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);
/// Step budget of the linearizability search, per key.
const LIN_BUDGET: u64 = super::checker::DEFAULT_BUDGET;

/// What the parent hands the child.
#[derive(Serialize, Deserialize)]
struct ChildSpec {
    plan: Plan,
    netns: Option<String>,
    bin: PathBuf,
}

pub enum Outcome {
    Done(Box<RunResult>),
    /// The harness itself could not run the plan (not a verdict on Cairn).
    HarnessError(String),
}

/// `target/chaos`, derived from this test binary's path (`target/<profile>/deps/chaos-…`),
/// unless `CAIRN_CHAOS_DIR` says otherwise.
pub fn chaos_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_CHAOS_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let target = exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("target"));
    target.join("chaos")
}

/// Private copies of this test binary and of `cairn`, taken when an invocation starts, so a
/// rebuild during a long soak cannot change the server under test or the re-executed child.
/// Removed on drop.
pub struct Binaries {
    dir: PathBuf,
    pub harness: PathBuf,
    pub cairn: PathBuf,
}

impl Binaries {
    pub fn snapshot() -> Result<Binaries, String> {
        let dir = chaos_root().join(format!(".bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let copy = |from: &Path, name: &str| -> Result<PathBuf, String> {
            let to = dir.join(name);
            std::fs::copy(from, &to).map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))?;
            Ok(to)
        };
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let harness = copy(&exe, "chaos")?;
        let cairn = copy(Path::new(env!("CARGO_BIN_EXE_cairn")), "cairn")?;
        Ok(Binaries { dir, harness, cairn })
    }
}

impl Drop for Binaries {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn plan_budget(plan: &Plan) -> Duration {
    // A membership step may wait out its join and removal deadlines (`reconfig.rs`).
    let extra = |s: &FaultStep| if s.kind == FaultKind::Membership { 125_000 } else { 5_000 };
    let steps: u64 = plan.steps.iter().map(|s| s.hold_ms + s.gap_ms + extra(s)).sum();
    Duration::from_millis(plan.warmup_ms + plan.cooldown_ms + steps)
        + FORM_DEADLINE
        + RECOVERY_DEADLINE
        + finale::FINAL_READ_DEADLINE
        + finale::CONVERGE_DEADLINE
        + watch::STOP_WITHIN
        + watch::REFERENCE_DEADLINE
        + Duration::from_secs(120)
}

/// Runs `plan` in `dir` (emptied first): in a fresh namespace when `use_netns`, else here on
/// 127.0.0.1. Prints the summary; keeps `dir` when the run failed or `keep` is set.
pub fn execute(plan: &Plan, dir: &Path, bins: &Binaries, use_netns: bool, test_name: &str, keep: bool) -> Outcome {
    let _ = std::fs::remove_dir_all(dir);
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Outcome::HarnessError(format!("create {}: {e}", dir.display()));
    }
    let _ = std::fs::write(dir.join("plan.json"), serde_json::to_vec_pretty(plan).unwrap_or_default());
    println!(
        "chaos: seed {} — workloads {:?}, faults {:?}, {} steps; run dir {}",
        plan.seed,
        plan.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
        plan.steps.iter().map(|s| s.kind.name()).collect::<Vec<_>>(),
        plan.steps.len(),
        dir.display()
    );
    let result = if use_netns {
        run_in_namespace(plan, dir, bins, test_name)
    } else {
        let spec = ChildSpec { plan: plan.clone(), netns: None, bin: bins.cairn.clone() };
        run_here_blocking(&spec, dir)
    };
    let outcome = match result {
        Ok(r) => {
            report::print_summary(&r);
            Outcome::Done(Box::new(r))
        }
        Err(e) => {
            println!("chaos: seed {}: HARNESS ERROR: {e}", plan.seed);
            Outcome::HarnessError(e)
        }
    };
    let passed = matches!(&outcome, Outcome::Done(r) if r.passed());
    if passed && !keep {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        println!("chaos: seed {}: history, node logs and data dirs kept in {}", plan.seed, dir.display());
    }
    outcome
}

fn run_in_namespace(plan: &Plan, dir: &Path, bins: &Binaries, test_name: &str) -> Result<RunResult, String> {
    let ns = NetNs::create()?;
    let spec = ChildSpec { plan: plan.clone(), netns: Some(ns.name.clone()), bin: bins.cairn.clone() };
    std::fs::write(dir.join("child.json"), serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut child = ns
        .command(&bins.harness)
        .args([test_name, "--exact", "--nocapture", "--include-ignored", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn the run inside {}: {e}", ns.name))?;
    let deadline = Instant::now() + plan_budget(plan);
    let status = match wait_deadline(&mut child, deadline) {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            // Dropping `ns` kills whatever the child left inside the namespace.
            return Err(format!("the run did not finish by its deadline: {e}"));
        }
    };
    drop(ns);
    let text = std::fs::read(dir.join("result.json"))
        .map_err(|_| format!("the run exited with {status} without a result (see its output above)"))?;
    serde_json::from_slice(&text).map_err(|e| format!("result.json: {e}"))
}

/// The child's side: reads `child.json` from `dir`, runs it, writes `result.json`.
pub fn child_main(dir: &Path) {
    let text = std::fs::read(dir.join("child.json")).expect("child.json");
    let spec: ChildSpec = serde_json::from_slice(&text).expect("parse child.json");
    match run_here_blocking(&spec, dir) {
        Ok(result) => {
            std::fs::write(dir.join("result.json"), serde_json::to_vec_pretty(&result).expect("encode result"))
                .expect("write result.json");
        }
        Err(e) => panic!("chaos run failed to execute: {e}"),
    }
}

fn run_here_blocking(spec: &ChildSpec, dir: &Path) -> Result<RunResult, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run_here(spec, dir))
}

fn addresses(n: usize, netns: bool) -> Vec<(String, u16)> {
    if netns {
        return (1..=n).map(|id| (format!("127.0.0.{}", 10 + id), NS_PORT)).collect();
    }
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port")).collect();
    listeners.iter().map(|l| ("127.0.0.1".to_string(), l.local_addr().expect("local_addr").port())).collect()
}

async fn run_here(spec: &ChildSpec, dir: &Path) -> Result<RunResult, String> {
    let began = Instant::now();
    if let Some(ns) = &spec.netns {
        netns::inside(ns)?;
    }
    let plan = &spec.plan;
    // Spare nodes for membership steps get their addresses (and firewall clearance) up front.
    let addrs = addresses(plan.nodes + plan.spare_nodes(), spec.netns.is_some());
    let mut cluster =
        Cluster::new(dir, &addrs, plan.nodes, spec.bin.clone(), plan.snapshot_logs, plan.uses_test_clock())?;
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().map_err(|e| e.to_string())?;
    let firewall = spec.netns.as_ref().map(|ns| Firewall::new(ns, addrs.iter().map(|(ip, _)| ip.clone()).collect()));
    if let Some(fw) = &firewall {
        fw.heal()?;
    }
    for id in cluster.ids() {
        cluster.start(id)?;
    }
    let leader = cluster.wait_stable_leader(&http, Instant::now() + FORM_DEADLINE).await?;
    println!("chaos: cluster of {} formed, leader {leader}", cluster.len());

    let clock = Clock::start();
    let ctx = Ctx::new(clock, Arc::new(plan.clone()), cluster.urls());
    let mut clients = tokio::task::JoinSet::new();
    workload::spawn_all(&ctx, &mut clients);
    let mut watchers = tokio::task::JoinSet::new();
    if plan.workloads.contains(&Workload::Watch) {
        watch::spawn_watchers(&ctx, &mut watchers);
    }

    let mut faults = Vec::new();
    let mut checks_out: Vec<CheckResult> = Vec::new();
    {
        let mut nemesis = Nemesis {
            cluster: &mut cluster,
            firewall: firewall.as_ref(),
            http: http.clone(),
            clock,
            ctx: ctx.clone(),
            hit_leader: false,
        };
        tokio::time::sleep(Duration::from_millis(plan.warmup_ms)).await;
        for step in &plan.steps {
            match nemesis.step(step).await {
                Ok(event) => faults.push(event),
                Err(e) => {
                    nemesis.heal_all()?;
                    return Err(format!("nemesis step {step:?}: {e}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(step.gap_ms)).await;
        }
        nemesis.heal_all()?;
    }
    tokio::time::sleep(Duration::from_millis(plan.cooldown_ms)).await;
    ctx.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let stop_ns = clock.now_ns();
    let mut ops: Vec<Op> = Vec::new();
    let collect_by = Instant::now() + Duration::from_millis(plan.op_timeout_ms) + Duration::from_secs(10);
    loop {
        let remaining = collect_by.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, clients.join_next()).await {
            Ok(Some(Ok(client_ops))) => ops.extend(client_ops),
            Ok(Some(Err(e))) => return Err(format!("a client task failed: {e}")),
            Ok(None) => break,
            Err(_) => {
                clients.abort_all();
                return Err("clients did not stop by their deadline".into());
            }
        }
    }
    let mut logs: Vec<watch::WatcherLog> = Vec::new();
    let watchers_by = Instant::now() + watch::STOP_WITHIN;
    loop {
        let remaining = watchers_by.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, watchers.join_next()).await {
            Ok(Some(Ok(log))) => logs.push(log),
            Ok(Some(Err(e))) => return Err(format!("a watcher task failed: {e}")),
            Ok(None) => break,
            Err(_) => {
                watchers.abort_all();
                return Err("watchers did not stop by their deadline".into());
            }
        }
    }
    logs.sort_by_key(|l| l.watcher);
    println!("chaos: workload stopped after {} operations; healing and reading the final state", ops.len());

    // Recovery: every fault is healed; the cluster must agree on a leader again.
    let recovered = cluster.wait_stable_leader(&http, Instant::now() + RECOVERY_DEADLINE).await;
    checks_out.push(CheckResult {
        name: "recovers after healing".into(),
        passed: recovered.is_ok(),
        detail: match &recovered {
            Ok(l) => format!("leader {l} agreed by every node"),
            Err(e) => e.clone(),
        },
    });
    if let Ok(leader) = recovered {
        let (finals, read_all) = finale::final_reads(&cluster, leader, &ops, clock).await;
        checks_out.push(read_all);
        checks_out.push(finale::convergence(&cluster, &http, leader, &finals).await);
        ops.extend(finals);
    }
    let reference = if plan.workloads.contains(&Workload::Watch) {
        Some(watch_reference(&cluster, &logs, &ops).await)
    } else {
        None
    };
    cluster.reap();
    checks_out.push(CheckResult {
        name: "no node exited on its own".into(),
        passed: cluster.unexpected_exits.is_empty(),
        detail: if cluster.unexpected_exits.is_empty() {
            format!("{} nodes", cluster.len())
        } else {
            cluster.unexpected_exits.join("; ")
        },
    });
    let urls = cluster.all_urls();
    cluster.stop_all();
    history::write_files(dir, &ops).map_err(|e| format!("write history: {e}"))?;
    std::fs::write(dir.join("faults.json"), serde_json::to_vec_pretty(&faults).unwrap_or_default())
        .map_err(|e| e.to_string())?;

    if plan.workloads.contains(&Workload::Watch) {
        std::fs::write(dir.join("watchers.json"), serde_json::to_vec(&logs).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        if let Some(Ok(r)) = &reference {
            std::fs::write(dir.join("watch-reference.json"), serde_json::to_vec(r).unwrap_or_default())
                .map_err(|e| e.to_string())?;
        }
    }
    let watch_stats = reference.as_ref().map(|r| watchcheck::stats(&logs, r.as_ref().ok()));
    println!("chaos: checking {} operations", ops.len());
    let workloads = plan.workloads.clone();
    let ttl_s = plan.ttl_s;
    let (ops, faults, checks) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        if faults.iter().any(|f| f.kind == FaultKind::Membership) {
            out.push(checks::membership(&faults));
        }
        for w in [Workload::Register, Workload::Counter] {
            if workloads.contains(&w) {
                out.push(checks::linearizability(&ops, w, LIN_BUDGET));
            }
        }
        if workloads.contains(&Workload::Counter) {
            out.push(checks::counter_bounds(&ops));
        }
        if workloads.contains(&Workload::Stale) {
            out.push(checks::no_lost_writes(&ops));
        }
        if workloads.contains(&Workload::Ttl) {
            out.push(checks::ttl(&ops, &faults).0);
            out.push(checks::ttl_clock(&ops, &faults, ttl_s));
        }
        if workloads.contains(&Workload::Stale) || workloads.contains(&Workload::Ttl) {
            out.push(checks::stale_reads(&ops, &faults, &urls));
        }
        if workloads.contains(&Workload::Lock) {
            out.extend(lockcheck::all(&ops));
        }
        match &reference {
            Some(Ok(r)) => out.extend(watchcheck::all(&logs, r, &ops)),
            Some(Err(e)) => {
                out.push(CheckResult { name: "watch reference history read".into(), passed: false, detail: e.clone() })
            }
            None => {}
        }
        out.push(checks::unexpected_responses(&ops));
        (ops, faults, out)
    })
    .await
    .map_err(|e| format!("checker task: {e}"))?;
    checks_out.extend(checks);
    Ok(RunResult {
        plan: plan.clone(),
        netns: spec.netns.is_some(),
        counts: report::counts(&ops, &plan.workloads),
        availability: report::availability(&ops, &faults, stop_ns),
        faults,
        checks: checks_out,
        watch: watch_stats,
        lock: plan.workloads.contains(&Workload::Lock).then(|| lock::stats(&ops)),
        duration_s: began.elapsed().as_secs_f64(),
    })
}

/// The reference for the watch checks, from the first watcher's start to past the last id any
/// watcher received and the last acknowledged watch write.
async fn watch_reference(
    cluster: &Cluster,
    logs: &[watch::WatcherLog],
    ops: &[Op],
) -> Result<watch::Reference, String> {
    let ranges: Vec<(u64, u64)> = logs.iter().filter_map(watchcheck::range).collect();
    let Some(after) = ranges.iter().map(|r| r.0).min() else {
        return Err(format!("none of the {} watchers received an event", logs.len()));
    };
    let acked = ops.iter().filter(|o| o.workload == Workload::Watch && o.is_ok()).filter_map(|o| o.extra.version);
    let end = ranges.iter().map(|r| r.1).chain(acked).max().unwrap_or(after);
    watch::reference(&cluster.urls(), after, end).await
}

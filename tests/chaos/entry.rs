//! The two ways in: the CI quick pass (one run per fault kind) and a configured run (one
//! seed, a soak of many seeds, or a saved plan), both configured by `CAIRN_CHAOS_*`
//! variables that `scripts/chaos.sh` sets. A process started as a run's child (inside the
//! namespace) goes straight to `runner::child_main`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::history::Workload;
use super::netns::NetNs;
use super::plan::{generate, mix, FaultKind, Plan, Profile, Spec};
use super::report::{fault_summary, RunResult};
use super::runner::{chaos_root, child_main, execute, Binaries, Outcome, CHILD_ENV};
use super::scenarios::{self, Scenario};

pub enum Mode {
    Quick,
    Configured,
}

struct Settings {
    seed: u64,
    seed_given: bool,
    workloads: Vec<Workload>,
    /// `None`: every kind the environment supports.
    faults: Option<Vec<FaultKind>>,
    nodes: usize,
    profile: Profile,
    soak: Option<Duration>,
    shrink: u32,
    plan: Option<PathBuf>,
    scenario: Option<String>,
    keep: bool,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn random_seed() -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    // Seeds stay below 2^53 so they survive any JSON tooling unchanged.
    mix(nanos ^ u64::from(std::process::id())) >> 11
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let seed = var("CAIRN_CHAOS_SEED")
            .map(|s| s.parse::<u64>().map_err(|_| format!("CAIRN_CHAOS_SEED={s} is not a u64")))
            .transpose()?;
        let workloads = match var("CAIRN_CHAOS_WORKLOAD").as_deref() {
            None | Some("all") => Workload::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(|w| Workload::parse(w.trim()).ok_or(format!("unknown workload {w}")))
                .collect::<Result<_, _>>()?,
        };
        let faults = match var("CAIRN_CHAOS_FAULTS").as_deref() {
            None | Some("all") => None,
            Some("none") => Some(Vec::new()),
            Some(list) => Some(
                list.split(',')
                    .map(|f| FaultKind::parse(f.trim()).ok_or(format!("unknown fault kind {f}")))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let nodes = match var("CAIRN_CHAOS_NODES").as_deref() {
            None | Some("3") => 3,
            Some("5") => 5,
            Some(n) => return Err(format!("CAIRN_CHAOS_NODES={n}: 3 or 5")),
        };
        let profile = match var("CAIRN_CHAOS_PROFILE") {
            None => Profile::Quick,
            Some(p) => Profile::parse(&p).ok_or(format!("CAIRN_CHAOS_PROFILE={p}: quick or soak"))?,
        };
        let soak = var("CAIRN_CHAOS_SOAK")
            .map(|s| humantime::parse_duration(&s).map_err(|e| format!("CAIRN_CHAOS_SOAK={s}: {e}")))
            .transpose()?;
        let shrink = var("CAIRN_CHAOS_SHRINK")
            .map(|s| s.parse::<u32>().map_err(|_| format!("CAIRN_CHAOS_SHRINK={s} is not a number")))
            .transpose()?
            .unwrap_or(0);
        Ok(Settings {
            seed: seed.unwrap_or_else(random_seed),
            seed_given: seed.is_some(),
            workloads,
            faults,
            nodes,
            profile,
            soak,
            shrink,
            plan: var("CAIRN_CHAOS_PLAN").map(PathBuf::from),
            scenario: var("CAIRN_CHAOS_SCENARIO"),
            keep: var("CAIRN_CHAOS_KEEP").is_some(),
        })
    }
}

/// Whether partitions can run here: a namespace can be created and iptables works in it.
fn probe_netns() -> Result<(), String> {
    if var("CAIRN_CHAOS_NO_NETNS").is_some() {
        return Err("disabled by CAIRN_CHAOS_NO_NETNS".into());
    }
    NetNs::create().map(drop)
}

pub fn main(mode: Mode, test_name: &str) {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child_main(Path::new(&dir));
        return;
    }
    let settings = Settings::from_env().unwrap_or_else(|e| panic!("chaos: bad settings: {e}"));
    let netns = probe_netns();
    match &netns {
        Ok(()) => println!("chaos: network namespaces and iptables work here: partition faults enabled"),
        Err(why) if var("CAIRN_CHAOS_REQUIRE_NETNS").is_some() => {
            panic!("chaos: partition faults are required (CAIRN_CHAOS_REQUIRE_NETNS) but cannot run: {why}")
        }
        Err(why) => println!(
            "chaos: PARTITION FAULTS SKIPPED — cannot use a private network namespace here: {why}. \
             Kill and pause faults still run, on 127.0.0.1."
        ),
    }
    let bins = Binaries::snapshot().unwrap_or_else(|e| panic!("chaos: {e}"));
    let ctx = Invocation { settings: &settings, bins: &bins, netns: netns.is_ok(), test_name };
    let rows = match mode {
        Mode::Quick => quick_pass(&ctx),
        Mode::Configured => configured(&ctx, netns.err()),
    };
    print_table(&rows);
    let bad: Vec<&Row> = rows.iter().filter(|r| r.failed()).collect();
    assert!(
        bad.is_empty(),
        "chaos: {} of {} runs failed: {}",
        bad.len(),
        rows.len(),
        bad.iter().map(|r| format!("seed {} ({})", r.seed, r.what)).collect::<Vec<_>>().join(", ")
    );
}

/// What every run of one invocation shares.
struct Invocation<'a> {
    settings: &'a Settings,
    bins: &'a Binaries,
    /// Partitions possible (a namespace could be created).
    netns: bool,
    test_name: &'a str,
}

impl Invocation<'_> {
    fn execute(&self, plan: &Plan, dir: &Path, keep: bool) -> Outcome {
        execute(plan, dir, self.bins, self.netns, self.test_name, keep)
    }
}

/// One line of the final table.
struct Row {
    seed: u64,
    what: String,
    replay: String,
    outcome: Result<Outcome, String>,
}

impl Row {
    fn failed(&self) -> bool {
        match &self.outcome {
            Ok(Outcome::Done(r)) => !r.passed(),
            Ok(Outcome::HarnessError(_)) => true,
            Err(_) => false,
        }
    }
}

fn replay_command(seed: u64, spec: &Spec) -> String {
    let workloads = if spec.workloads.len() == Workload::ALL.len() {
        "all".to_string()
    } else {
        spec.workloads.iter().map(|w| w.name()).collect::<Vec<_>>().join(",")
    };
    let faults = if spec.faults.is_empty() {
        "none".to_string()
    } else {
        spec.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(",")
    };
    format!(
        "scripts/chaos.sh --seed {seed} --workload {workloads} --faults {faults} --nodes {} --profile {}",
        spec.nodes,
        spec.profile.name()
    )
}

fn run_spec(inv: &Invocation, spec: &Spec, seed: u64) -> Row {
    let (plan, _) = generate(spec, seed);
    let replay = replay_command(seed, spec);
    println!("\nchaos: ===== seed {seed}: {replay}");
    let outcome = inv.execute(&plan, &chaos_root().join(seed.to_string()), inv.settings.keep);
    let what = spec.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(",");
    Row { seed, what, replay, outcome: Ok(outcome) }
}

/// One run per fault kind, each on all workloads, seeds derived from one printed base seed.
fn quick_pass(inv: &Invocation) -> Vec<Row> {
    let s = inv.settings;
    println!(
        "chaos: quick pass, base seed {} (replay the whole pass: scripts/chaos.sh --quick --seed {})",
        s.seed, s.seed
    );
    let mut rows = Vec::new();
    for (i, kind) in FaultKind::ALL.into_iter().enumerate() {
        let seed = mix(s.seed.wrapping_add(i as u64)) >> 11;
        if kind.is_partition() && !inv.netns {
            rows.push(Row {
                seed,
                what: kind.name().into(),
                replay: "-".into(),
                outcome: Err("skipped: no network namespace".into()),
            });
            continue;
        }
        let spec = Spec { profile: Profile::Quick, nodes: s.nodes, workloads: s.workloads.clone(), faults: vec![kind] };
        rows.push(run_spec(inv, &spec, seed));
    }
    for (i, sc) in scenarios::ALL.iter().enumerate() {
        let seed = mix(s.seed.wrapping_add(1_000 + i as u64)) >> 11;
        rows.push(run_scenario(inv, sc, seed));
    }
    rows
}

fn run_scenario(inv: &Invocation, sc: &Scenario, seed: u64) -> Row {
    let nodes = inv.settings.nodes;
    let plan = sc.plan(seed, nodes);
    let replay = format!("scripts/chaos.sh --scenario {} --seed {seed} --nodes {nodes}", sc.name);
    println!("\nchaos: ===== seed {seed}: regression scenario {} ({})", sc.name, sc.guards);
    let outcome = inv.execute(&plan, &chaos_root().join(seed.to_string()), inv.settings.keep);
    Row { seed, what: sc.name.to_string(), replay, outcome: Ok(outcome) }
}

/// `no_netns`: why partitions cannot run here, if they cannot.
fn configured(inv: &Invocation, no_netns: Option<String>) -> Vec<Row> {
    let s = inv.settings;
    if let Some(name) = &s.scenario {
        let names: Vec<&str> = scenarios::ALL.iter().map(|sc| sc.name).collect();
        let sc = scenarios::find(name).unwrap_or_else(|| panic!("unknown scenario {name}; known: {names:?}"));
        return vec![run_scenario(inv, sc, s.seed)];
    }
    if let Some(path) = &s.plan {
        let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let plan: Plan = serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        if plan.steps.iter().any(|st| st.kind.is_partition()) {
            if let Some(why) = &no_netns {
                panic!("this plan has partition faults, which cannot run here: {why}");
            }
        }
        let dir = chaos_root().join(format!("{}-replay", plan.seed));
        let outcome = inv.execute(&plan, &dir, s.keep);
        return vec![Row {
            seed: plan.seed,
            what: fault_kinds(&plan),
            replay: format!("scripts/chaos.sh --plan {}", path.display()),
            outcome: Ok(outcome),
        }];
    }
    let faults = match (&s.faults, &no_netns) {
        (None, None) => FaultKind::ALL.to_vec(),
        (None, Some(_)) => FaultKind::ALL.into_iter().filter(|k| !k.is_partition()).collect(),
        (Some(list), Some(why)) if list.iter().any(|k| k.is_partition()) => {
            panic!("partition faults were asked for but cannot run here: {why}")
        }
        (Some(list), _) => list.clone(),
    };
    let mut spec = Spec { profile: s.profile, nodes: s.nodes, workloads: s.workloads.clone(), faults };
    if let Some(total) = s.soak {
        spec.profile = Profile::Soak;
        println!("chaos: soak for {total:?}, base seed {} (seeds of the runs are derived from it)", s.seed);
        let until = Instant::now() + total;
        let mut rows = Vec::new();
        let mut i = 0u64;
        while Instant::now() < until {
            let seed = mix(s.seed.wrapping_add(i)) >> 11;
            i += 1;
            rows.push(run_spec(inv, &spec, seed));
        }
        return rows;
    }
    if !s.seed_given {
        println!("chaos: no --seed given; using seed {}", s.seed);
    }
    let row = run_spec(inv, &spec, s.seed);
    if row.failed() && s.shrink > 0 {
        shrink(inv, &spec);
    }
    vec![row]
}

fn fault_kinds(plan: &Plan) -> String {
    let mut kinds: Vec<&str> = plan.steps.iter().map(|s| s.kind.name()).collect();
    kinds.dedup();
    kinds.join(",")
}

/// Re-runs simpler versions of the failing plan (proptest's shrinking), at most `s.shrink`
/// runs, and saves the smallest plan that still failed. Real runs are not deterministic, so a
/// simpler plan that passes once is not proof the bug needs the removed steps.
fn shrink(inv: &Invocation, spec: &Spec) {
    let s = inv.settings;
    let (plan, mut tree) = generate(spec, s.seed);
    let root = chaos_root().join(s.seed.to_string());
    let mut smallest = plan;
    let mut runs = 0;
    let mut more = tree.simplify();
    while more && runs < s.shrink {
        runs += 1;
        let candidate = tree.current();
        println!(
            "\nchaos: shrink {runs}/{}: {} steps {:?}",
            s.shrink,
            candidate.steps.len(),
            candidate.steps.iter().map(|st| st.kind.name()).collect::<Vec<_>>()
        );
        let failed = matches!(
            inv.execute(&candidate, &root.join(format!("shrink-{runs}")), false),
            Outcome::Done(r) if !r.passed()
        );
        more = if failed {
            smallest = candidate;
            tree.simplify()
        } else {
            tree.complicate()
        };
    }
    let path = root.join("smallest-plan.json");
    let _ = std::fs::write(&path, serde_json::to_vec_pretty(&smallest).unwrap_or_default());
    println!(
        "chaos: smallest failing plan found ({} steps) saved to {}; replay it with scripts/chaos.sh --plan {}",
        smallest.steps.len(),
        path.display(),
        path.display()
    );
}

fn print_table(rows: &[Row]) {
    println!("\nchaos: summary");
    println!(
        "{:<17} {:<26} {:>16} {:<8} {:<24} {:>10} {:>12}",
        "seed", "faults injected", "ok/fail/unknown", "verdict", "ok ops/s bef/dur/aft", "no-write", "leader→write"
    );
    for r in rows {
        match &r.outcome {
            Err(why) => println!("{:<17} {:<26} {why}", r.seed, r.what),
            Ok(Outcome::HarnessError(e)) => println!("{:<17} {:<26} HARNESS ERROR: {e}", r.seed, r.what),
            Ok(Outcome::Done(res)) => print_row(r, res),
        }
    }
    for r in rows.iter().filter(|r| r.failed()) {
        println!("chaos: replay seed {}: {}", r.seed, r.replay);
    }
}

fn print_row(r: &Row, res: &RunResult) {
    let (mut ok, mut fail, mut info) = (0, 0, 0);
    for (_, c) in &res.counts {
        ok += c.ok;
        fail += c.fail;
        info += c.info;
    }
    let a = &res.availability;
    let f = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into());
    let kills: Vec<String> = a
        .leader_fault_to_write_ms
        .iter()
        .map(|(_, ms)| ms.map(|ms| format!("{ms}ms")).unwrap_or_else(|| "never".into()))
        .collect();
    println!(
        "{:<17} {:<26} {:>16} {:<8} {:<24} {:>8}ms {:>12}",
        r.seed,
        fault_summary(&res.faults),
        format!("{ok}/{fail}/{info}"),
        if res.passed() { "ok" } else { "FAIL" },
        format!("{}/{}/{}", f(a.ops_per_s_before), f(a.ops_per_s_during), f(a.ops_per_s_after)),
        a.longest_no_write_ms,
        if kills.is_empty() { "-".into() } else { kills.join(",") }
    );
}

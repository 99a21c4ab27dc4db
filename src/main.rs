//! The `cairn` binary: parses flags, sets up logging, and calls the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use cairn::backup::RestoreArgs;
use cairn::bench::BenchOpts;
use cairn::client::{
    run_backup, run_cluster, run_elect, run_kv, run_lease, run_lock, run_token, run_watch, ClientOpts, ClusterCmd,
    ElectArgs, KvCmd, LeaseCmd, LockArgs, TokenCmd, WatchArgs,
};
use cairn::config::{LogFormat, ServeArgs};

#[derive(Parser)]
#[command(name = "cairn", version, about = "A replicated JSON key/value store")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node.
    Serve(Box<ServeArgs>),
    /// Read and write keys.
    Kv {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: KvCmd,
    },
    /// Create, list and revoke access tokens.
    Token {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Download a consistent backup (a fresh snapshot from the leader) to a file.
    Backup {
        #[command(flatten)]
        opts: ClientOpts,
        /// Where to write the backup
        #[arg(long)]
        out: PathBuf,
    },
    /// Seed a new node's data dir from a backup file (offline; run once per node of the new
    /// cluster, each with its own --id and the same --peers).
    Restore(RestoreArgs),
    /// Inspect the cluster and change its membership.
    Cluster {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Follow changes under a prefix: one JSON line per change, across endpoints.
    Watch {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(flatten)]
        args: WatchArgs,
    },
    /// Grant, keep alive and revoke leases.
    Lease {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: LeaseCmd,
    },
    /// Run a command while holding a lock; its fencing token is in CAIRN_LOCK_TOKEN.
    Lock {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(flatten)]
        args: LockArgs,
    },
    /// Campaign in an election and lead until interrupted, or --observe its leader.
    Elect {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(flatten)]
        args: ElectArgs,
    },
    /// Load-test a cluster (or etcd, with --target etcd).
    Bench(BenchOpts),
    /// Serve `cairn bench`'s routes over a node's HTTP path with no storage or replication:
    /// this machine's ceiling, measured beside Cairn by scripts/bench-vs-etcd.sh.
    #[command(hide = true)]
    Ceiling(Box<CeilingArgs>),
}

#[derive(clap::Args)]
struct CeilingArgs {
    /// `cairn serve`'s flags; only --listen and the connection limits are used.
    #[command(flatten)]
    serve: ServeArgs,
    /// Bytes of value in every GET answer.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build()
}

fn serve(args: &ServeArgs) -> ExitCode {
    init_tracing(args.log_format);
    let config = match args.node_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime(args.worker_threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(cairn::server::run(config, cairn::server::shutdown_signal()));
    // Dropping the runtime would wait for every blocking task; one wedged on a failed disk
    // (sled's flush, a storage call Raft never finished) would keep the process alive for
    // ever after `run` gave up on it. The node has stopped serving by now: bounded exit, and
    // after a failure no wait at all, since the tasks left hold nothing a restart needs.
    match result {
        Ok(()) => rt.shutdown_timeout(std::time::Duration::from_secs(5)),
        Err(_) => rt.shutdown_background(),
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "node failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client command on a runtime of `threads` workers (none: the current thread) and
/// turns its exit code into the process's.
fn client_main<Fut: std::future::Future<Output = i32>>(threads: Option<usize>, f: Fut) -> ExitCode {
    let rt = match threads {
        Some(n) => runtime(Some(n)),
        None => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    };
    match rt {
        Ok(rt) => ExitCode::from(u8::try_from(rt.block_on(f)).unwrap_or(3)),
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            ExitCode::from(3)
        }
    }
}

fn ceiling(args: &CeilingArgs) -> ExitCode {
    init_tracing(args.serve.log_format);
    let run = args.serve.node_config().map(|config| async move {
        cairn::bench::ceiling::run(config, args.value_size, cairn::server::shutdown_signal()).await
    });
    let result = match (run, runtime(args.serve.worker_threads)) {
        (Err(e), _) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        (_, Err(e)) => Err(e.to_string()),
        (Ok(run), Ok(rt)) => rt.block_on(run).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // `serve --config FILE` supplies the flags the command line and environment left unset.
    let argv = match cairn::config::file::argv_with_config_file(Cli::command(), std::env::args().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match Cli::parse_from(argv).cmd {
        Cmd::Serve(args) => serve(&args),
        Cmd::Kv { opts, cmd } => client_main(None, async move { run_kv(&opts, cmd).await }),
        Cmd::Cluster { opts, cmd } => client_main(None, async move { run_cluster(&opts, cmd).await }),
        Cmd::Token { opts, cmd } => client_main(None, async move { run_token(&opts, cmd).await }),
        Cmd::Backup { opts, out } => client_main(None, async move { run_backup(&opts, &out).await }),
        Cmd::Watch { opts, args } => client_main(None, async move { run_watch(&opts, args).await }),
        Cmd::Lease { opts, cmd } => client_main(None, async move { run_lease(&opts, cmd).await }),
        Cmd::Lock { opts, args } => client_main(None, async move { run_lock(&opts, args).await }),
        Cmd::Elect { opts, args } => client_main(None, async move { run_elect(&opts, args).await }),
        Cmd::Restore(args) => ExitCode::from(u8::try_from(cairn::backup::run_restore(&args)).unwrap_or(1)),
        // Every bench client is a task on `--threads` runtime threads.
        Cmd::Bench(opts) => client_main(Some(opts.threads), cairn::bench::run(opts)),
        Cmd::Ceiling(args) => ceiling(&args),
    }
}

/// glibc's allocator was about 20 % of a busy leader's CPU (`_int_malloc`, `malloc_consolidate`,
/// `unlink_chunk`); with mimalloc, puts at 256 clients went up by about a quarter
/// (docs/performance.md, "What mattered").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

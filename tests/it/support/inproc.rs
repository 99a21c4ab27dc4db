//! A node running inside the test process: `cairn::server::serve` on a listener the harness
//! bound, on a runtime and thread of its own, stopped through its shutdown future. Its
//! arguments are parsed by the binary's own `ServeArgs` (so the same validation applies),
//! with every `CAIRN_*` environment lookup switched off: the developer's shell cannot leak in.

use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches};
use tokio::sync::oneshot;

#[derive(clap::Parser)]
struct Serve {
    #[command(flatten)]
    args: cairn::config::ServeArgs,
}

/// `cairn serve` arguments (after the subcommand name) → the node's configuration, exactly as
/// the binary would build it, minus environment variables and config files.
pub fn node_config(args: &[String]) -> Result<cairn::config::NodeConfig, String> {
    let command = Serve::command().mut_args(|a| a.env(None::<&'static str>));
    let argv = std::iter::once("serve".to_string()).chain(args.iter().cloned());
    let matches = command.try_get_matches_from(argv).map_err(|e| e.to_string())?;
    let serve = Serve::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    serve.args.node_config()
}

pub struct InProcNode {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl InProcNode {
    /// Starts a node with `args` (the `cairn serve` flags) on `listener`.
    pub fn start(name: String, args: &[String], listener: TcpListener) -> InProcNode {
        let config = node_config(args).unwrap_or_else(|e| panic!("{name}: bad arguments {args:?}: {e}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| format!("runtime: {e}"))?;
                let served = rt.block_on(async move {
                    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
                    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    cairn::server::serve(listener, config, shutdown).await.map_err(|e| e.to_string())
                });
                // Tasks still parked on a dead peer must not hold the test's thread forever.
                rt.shutdown_timeout(Duration::from_secs(5));
                served
            })
            .expect("spawn a node thread");
        InProcNode { stop: Some(stop), thread: Some(thread) }
    }

    /// Why the node stopped on its own, if it did: start-up failed, or the server returned.
    pub fn exit(&mut self) -> Option<String> {
        if !self.thread.as_ref()?.is_finished() {
            return None;
        }
        let thread = self.thread.take()?;
        Some(match thread.join() {
            Ok(Ok(())) => "the server returned".into(),
            Ok(Err(e)) => e,
            Err(_) => "its thread panicked".into(),
        })
    }

    /// Resolves the node's shutdown future; it drains and stops in the background.
    pub fn ask_to_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Asks the node to shut down and waits for its thread, at most until `deadline`.
    pub fn stop(&mut self, deadline: Instant) -> Result<(), String> {
        self.ask_to_stop();
        let Some(thread) = self.thread.take() else { return Ok(()) };
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                // Leave the thread behind (it owns nothing the test still needs); say so.
                return Err("the in-process node did not stop by the deadline".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match thread.join() {
            Ok(result) => result,
            Err(_) => Err("the in-process node's thread panicked".into()),
        }
    }
}

impl Drop for InProcNode {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop(Instant::now() + Duration::from_secs(20));
        }
    }
}

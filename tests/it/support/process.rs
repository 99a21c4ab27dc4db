//! Spawning the `cairn` binary: a hermetic command (no `CAIRN_*` variable inherited),
//! one-off runs with a deadline, exit waits with a deadline, and log reading.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the `cairn` binary once with `args` (stdout and stderr captured), killing it and
/// failing the test if it has not exited by `deadline`.
pub async fn run_cairn_once(args: &[String], deadline: Instant) -> Output {
    let mut cmd = tokio::process::Command::from(cairn_command());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().expect("spawn cairn");
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining, child.wait_with_output()).await {
        Ok(output) => output.expect("collect cairn output"),
        // Dropping the timed-out future drops the child, which `kill_on_drop` SIGKILLs.
        Err(_) => panic!("`cairn {}` still running at the deadline", args.join(" ")),
    }
}

/// Polls `try_wait` until the child exits or `deadline` passes.
pub async fn wait_until_exit(child: &mut Child, deadline: Instant) -> Result<ExitStatus, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => return Err(format!("try_wait: {e}")),
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!("pid {} still running at the deadline", child.id()));
        }
        tokio::time::sleep(Duration::from_millis(50).min(remaining)).await;
    }
}

/// A `Command` for the binary under test that inherits no `CAIRN_*` variable: every one is
/// removed by prefix, so a variable added to `cairn serve` later cannot leak in from the
/// developer's shell either (`process::environment` proves it).
pub fn cairn_command() -> Command {
    cairn_command_for(std::path::Path::new(env!("CARGO_BIN_EXE_cairn")))
}

/// [`cairn_command`] for another build of the binary (the chaos harness may run a release
/// build).
pub fn cairn_command_for(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("CAIRN_") {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// The last `lines` lines of a log file (lossily decoded), or why it cannot be read.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read log: {e}>"),
    }
}

/// Reads a whole log file (for assertions about what a node printed).
pub fn read_log(path: &Path) -> String {
    std::fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

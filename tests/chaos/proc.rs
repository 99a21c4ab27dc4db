//! Running short external tools (`ip`, `iptables`) with a deadline.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `program args` to completion, killing it at `deadline`; stdout on success, otherwise
/// the exit status and stderr.
pub fn run_cmd(program: &str, args: &[&str], deadline: Duration) -> Result<String, String> {
    let shown = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let status = match wait_deadline(&mut child, Instant::now() + deadline) {
        Ok(status) => status,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("`{shown}`: {e}"));
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    if status.success() {
        Ok(out)
    } else {
        Err(format!("`{shown}` exited with {status}: {}", err.trim()))
    }
}

/// Polls `try_wait` until the child exits or the deadline passes.
pub fn wait_deadline(child: &mut Child, deadline: Instant) -> Result<ExitStatus, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => return Err(format!("try_wait: {e}")),
        }
        if Instant::now() >= deadline {
            return Err(format!("pid {} still running at its deadline", child.id()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

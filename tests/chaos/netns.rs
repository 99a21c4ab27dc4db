//! The private network namespace a run lives in, and the iptables rules that cut links in it.
//!
//! `NetNs` creates `cairn-chaos-<pid>-<n>`, brings its loopback up (so every 127/8 address,
//! 127.0.0.11.., is local to it) and deletes it on drop, even when the run fails. `Firewall`
//! adds DROP rules on (source, destination) address pairs; every rule names only addresses of
//! the namespace's own loopback, and every iptables call names the namespace explicitly.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::proc::run_cmd;

/// Deadline of one `ip` or `iptables` invocation.
const TOOL_DEADLINE: Duration = Duration::from_secs(15);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace created by this process; deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// A fresh namespace with loopback up and iptables usable in it, or why that is impossible
    /// here (not root, no `ip`, no iptables, no namespace support).
    pub fn create() -> Result<NetNs, String> {
        let name = format!("cairn-chaos-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run_cmd("ip", &["netns", "add", &name], TOOL_DEADLINE).map_err(|e| format!("`ip netns add` failed: {e}"))?;
        // From here on, drop removes it.
        let ns = NetNs { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        let addrs = ns.exec(&["ip", "-o", "-4", "addr", "show", "dev", "lo"])?;
        if !addrs.contains("127.0.0.1/8") {
            return Err(format!("loopback of {} does not carry 127.0.0.1/8: {addrs}", ns.name));
        }
        ns.exec(&["iptables", "-w", "5", "-S", "INPUT"])
            .map_err(|e| format!("iptables does not work in a namespace: {e}"))?;
        Ok(ns)
    }

    /// Runs a tool inside the namespace and returns its stdout.
    pub fn exec(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run_cmd("ip", &full, TOOL_DEADLINE)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` execs it in place).
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Any process still inside was started by this run (nothing else enters a namespace
        // named for this PID), e.g. a node of a child run that was itself killed at its deadline.
        if let Ok(pids) = run_cmd("ip", &["netns", "pids", &self.name], TOOL_DEADLINE) {
            for pid in pids.split_whitespace() {
                eprintln!("chaos: killing leftover pid {pid} in namespace {}", self.name);
                let _ = run_cmd("kill", &["-KILL", pid], TOOL_DEADLINE);
            }
        }
        if let Err(e) = run_cmd("ip", &["netns", "delete", &self.name], TOOL_DEADLINE) {
            eprintln!("chaos: WARNING: could not delete network namespace {}: {e}", self.name);
        }
    }
}

/// Whether this process runs inside the named namespace (`ip netns identify` of our PID).
pub fn inside(name: &str) -> Result<(), String> {
    let me = std::process::id().to_string();
    let seen = run_cmd("ip", &["netns", "identify", &me], TOOL_DEADLINE)?;
    if seen.split_whitespace().any(|n| n == name) {
        Ok(())
    } else {
        Err(format!("this process is in namespace {seen:?}, not {name}"))
    }
}

/// DROP rules inside one namespace. Rules go on INPUT, which loopback traffic traverses.
pub struct Firewall {
    ns: String,
    /// Addresses rules may name: the nodes' own loopback addresses.
    allowed: Vec<String>,
}

impl Firewall {
    pub fn new(ns: &str, allowed: Vec<String>) -> Firewall {
        Firewall { ns: ns.to_string(), allowed }
    }

    fn iptables(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["netns", "exec", self.ns.as_str(), "iptables", "-w", "5"];
        full.extend_from_slice(args);
        run_cmd("ip", &full, TOOL_DEADLINE)
    }

    /// Drops every packet from `src` to `dst` (one direction).
    pub fn drop_packets(&self, src: &str, dst: &str) -> Result<(), String> {
        for ip in [src, dst] {
            if !self.allowed.iter().any(|a| a == ip) {
                return Err(format!("refusing a rule for {ip}: not a node address of this namespace"));
            }
        }
        self.iptables(&["-A", "INPUT", "-s", src, "-d", dst, "-j", "DROP"]).map(|_| ())
    }

    /// Removes every rule, then checks none is left.
    pub fn heal(&self) -> Result<(), String> {
        self.iptables(&["-F", "INPUT"])?;
        let left = self.iptables(&["-S", "INPUT"])?;
        if left.contains("DROP") {
            return Err(format!("rules left after flushing: {left}"));
        }
        Ok(())
    }

    /// The current rules (for the run log).
    pub fn rules(&self) -> String {
        self.iptables(&["-S", "INPUT"]).unwrap_or_else(|e| e)
    }
}

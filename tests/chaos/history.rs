//! The recorded history: one `Record` per client operation in the JSON Lines format
//! (`{"client","node","op","key","arg","status","res","call","ret"}`), the run's clock, and the
//! files a run writes (`history.jsonl` for register and counter operations, which any outside
//! linearizability checker can read as is; `history-ttl.jsonl` and `history-stale.jsonl` add
//! workload-specific fields after the standard ones, as do `history-watch.jsonl` and
//! `history-lock.jsonl`; `history-annotated.jsonl` is
//! `history.jsonl` with those fields, for debugging).

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Register,
    Counter,
    Ttl,
    Stale,
    /// Batch writers and watchers that resume on random nodes (`watch.rs`).
    Watch,
    /// Clients contending for one lock, each holder making fenced writes (`lock.rs`).
    Lock,
}

impl Workload {
    pub const ALL: [Workload; 6] =
        [Workload::Register, Workload::Counter, Workload::Ttl, Workload::Stale, Workload::Watch, Workload::Lock];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Counter => "counter",
            Workload::Ttl => "ttl",
            Workload::Stale => "stale",
            Workload::Watch => "watch",
            Workload::Lock => "lock",
        }
    }

    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Read,
    Write,
    Cas,
    Incr,
    /// Lock workload: `POST /leases` (`res`: the lease id).
    Grant,
    /// Lock workload: `POST /leases/{id}/keepalive`.
    Keepalive,
    /// Lock workload: `DELETE /leases/{id}`.
    Revoke,
    /// Lock workload: `POST /locks/{name}` (`res`: the fencing token once held).
    Acquire,
    /// Lock workload: `DELETE /locks/{name}/{token}`.
    Release,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Happened, with the result in `res`.
    Ok,
    /// Definitely did not happen.
    Fail,
    /// Outcome unknown: may or may not have happened.
    Info,
}

/// One operation, exactly the history line. `call` and `ret` are nanoseconds of the
/// run's monotonic clock; for `info` operations `ret` is when the client gave up, and checkers
/// treat the return as open-ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Record {
    pub client: u64,
    pub node: String,
    pub op: OpKind,
    pub key: String,
    pub arg: Value,
    pub status: Status,
    pub res: Value,
    pub call: u64,
    pub ret: u64,
}

/// Workload-specific facts written after the standard fields in the ttl and stale files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Extra {
    /// `stale` (a follower's default read) or `strong`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consistency: Option<String>,
    /// `X-Cairn-Node` of the answer: which node produced it (the leader, when proxied).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub served_by: Option<u64>,
    /// The item's `version` in a successful response.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<u64>,
    /// `expiresAt` of a successful TTL write, as Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_at_ms: Option<u64>,
    /// Wall-clock Unix milliseconds at call and return (TTL judgements need wall time).
    pub call_wall_ms: u64,
    pub ret_wall_ms: u64,
    /// Why the operation failed or is unknown (HTTP status and code, or transport error).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Lock workload: the fencing token a fenced write carried, or an acquisition returned.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token: Option<u64>,
    /// Lock workload: a fenced write made by a holder that stopped renewing its lease and slept
    /// past its TTL before writing (a paused holder waking up).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub stale_holder: bool,
}

/// A recorded operation with the workload that issued it.
#[derive(Clone, Debug)]
pub struct Op {
    pub workload: Workload,
    pub rec: Record,
    pub extra: Extra,
}

impl Op {
    pub fn is_ok(&self) -> bool {
        self.rec.status == Status::Ok
    }

    /// A write that took effect: an acknowledged write, increment, or successful CAS.
    pub fn is_successful_write(&self) -> bool {
        self.is_ok()
            && match self.rec.op {
                OpKind::Read
                | OpKind::Grant
                | OpKind::Keepalive
                | OpKind::Revoke
                | OpKind::Acquire
                | OpKind::Release => false,
                OpKind::Write | OpKind::Incr => true,
                OpKind::Cas => self.rec.res == Value::Bool(true),
            }
    }
}

/// The run's clock: monotonic nanoseconds since the run began, and wall milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { base: Instant::now() }
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `expiresAt` (`YYYY-MM-DDTHH:MM:SS[.fff…]Z`, RFC 3339 UTC) as Unix milliseconds.
pub fn parse_expires_at_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = s[19..].strip_suffix('Z')?;
    let millis = match rest.strip_prefix('.') {
        None if rest.is_empty() => 0,
        Some(frac) if !frac.is_empty() && frac.bytes().all(|c| c.is_ascii_digit()) => {
            format!("{frac:0<3}")[..3].parse::<i64>().ok()?
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000 + millis).ok()
}

/// The line written to the ttl and stale files: the standard fields, then the extras.
#[derive(Serialize)]
struct ExtendedLine<'a> {
    #[serde(flatten)]
    rec: &'a Record,
    workload: Workload,
    #[serde(flatten)]
    extra: &'a Extra,
}

/// Writes `history.jsonl` (register and counter), `history-annotated.jsonl` (the same with
/// extras), `history-ttl.jsonl`, `history-stale.jsonl`, `history-watch.jsonl` (the watch
/// workload's batch writes) and `history-lock.jsonl` (leases, locks and fenced writes) into
/// `dir`, sorted by call time.
pub fn write_files(dir: &Path, ops: &[Op]) -> std::io::Result<()> {
    let mut sorted: Vec<&Op> = ops.iter().collect();
    sorted.sort_by_key(|o| (o.rec.call, o.rec.client));
    let open = |name: &str| -> std::io::Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(std::fs::File::create(dir.join(name))?))
    };
    let (mut main, mut annotated) = (open("history.jsonl")?, open("history-annotated.jsonl")?);
    let (mut ttl, mut stale) = (open("history-ttl.jsonl")?, open("history-stale.jsonl")?);
    let (mut watch, mut lock) = (open("history-watch.jsonl")?, open("history-lock.jsonl")?);
    for op in sorted {
        let line = ExtendedLine { rec: &op.rec, workload: op.workload, extra: &op.extra };
        let out = match op.workload {
            Workload::Register | Workload::Counter => {
                serde_json::to_writer(&mut main, &op.rec)?;
                main.write_all(b"\n")?;
                &mut annotated
            }
            Workload::Ttl => &mut ttl,
            Workload::Stale => &mut stale,
            Workload::Watch => &mut watch,
            Workload::Lock => &mut lock,
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    for mut f in [main, annotated, ttl, stale, watch, lock] {
        f.flush()?;
    }
    Ok(())
}

/// Reads a history file in the standard format (extra fields are ignored).
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: Record =
            serde_json::from_str(&line).map_err(|e| format!("{}:{}: {e}: {line}", path.display(), n + 1))?;
        out.push(rec);
    }
    Ok(out)
}

//! What a benchmark run asks for: the workload names, the read/write mix, key choice and the
//! small deterministic random generator the workers draw from.

use std::fmt;
use std::str::FromStr;

/// One `--workload` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Create-or-replace writes.
    Put,
    /// Linearizable reads (sent to the leader).
    Get,
    /// Stale reads on a follower (etcd: serializable range on a follower).
    GetStale,
    /// Linearizable reads and puts in the ratio `reads : writes`.
    Mixed(Mix),
    /// Atomic increments.
    Incr,
    /// Read the version, then write with `ifVersion`: one op is both requests.
    Cas,
}

/// A read/write ratio such as `90/10`. Both parts are weights, so `9/1` means the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub reads: u32,
    pub writes: u32,
}

/// What one operation of a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Put,
    Get,
    GetStale,
    Incr,
    Cas,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::GetStale => "get-stale",
            OpKind::Incr => "incr",
            OpKind::Cas => "cas",
        }
    }
}

impl Mix {
    /// The op for a uniform draw `r`. Pure, so the ratio is testable without a clock or a server.
    pub fn choose(self, r: u64) -> OpKind {
        let total = u64::from(self.reads) + u64::from(self.writes);
        if r % total < u64::from(self.reads) {
            OpKind::Get
        } else {
            OpKind::Put
        }
    }
}

impl Workload {
    /// The op a worker runs next, given a uniform random draw (used only by `mixed`).
    pub fn next_op(self, r: u64) -> OpKind {
        match self {
            Workload::Put => OpKind::Put,
            Workload::Get => OpKind::Get,
            Workload::GetStale => OpKind::GetStale,
            Workload::Mixed(mix) => mix.choose(r),
            Workload::Incr => OpKind::Incr,
            Workload::Cas => OpKind::Cas,
        }
    }

    /// Reads of keys that should exist; these workloads preload the key space by default.
    pub fn reads_existing_keys(self) -> bool {
        matches!(self, Workload::Get | Workload::GetStale | Workload::Mixed(_))
    }

    /// The kinds of op this workload issues, in report order.
    pub fn op_kinds(self) -> Vec<OpKind> {
        match self {
            Workload::Mixed(_) => vec![OpKind::Get, OpKind::Put],
            other => vec![other.next_op(0)],
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Mixed(m) => write!(f, "mixed:{}/{}", m.reads, m.writes),
            other => f.write_str(other.next_op(0).name()),
        }
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(ratio) = s.strip_prefix("mixed:") {
            return parse_mix(ratio).map(Workload::Mixed);
        }
        match s {
            "put" => Ok(Workload::Put),
            "get" => Ok(Workload::Get),
            "get-stale" => Ok(Workload::GetStale),
            "mixed" => Ok(Workload::Mixed(Mix { reads: 90, writes: 10 })),
            "incr" => Ok(Workload::Incr),
            "cas" => Ok(Workload::Cas),
            _ => Err(format!("unknown workload {s:?} (expected put, get, get-stale, mixed:R/W, incr or cas)")),
        }
    }
}

fn parse_mix(ratio: &str) -> Result<Mix, String> {
    let bad = || format!("invalid mix {ratio:?}: expected READS/WRITES such as 90/10");
    let (r, w) = ratio.split_once('/').ok_or_else(bad)?;
    let reads: u32 = r.trim().parse().map_err(|_| bad())?;
    let writes: u32 = w.trim().parse().map_err(|_| bad())?;
    if reads == 0 && writes == 0 {
        return Err(bad());
    }
    Ok(Mix { reads, writes })
}

/// The name of key `i`. Fixed width so every request of a run has the same size.
pub fn key_name(i: usize) -> String {
    format!("bench-{i:08}")
}

/// splitmix64: tiny, fast and good enough to spread keys and mix ops; seeded per worker so
/// workers do not march through the key space in step.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A key index in `0..n` (`n > 0`). The modulo bias is negligible for key counts far below 2^64.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_workload_name() {
        assert_eq!("put".parse::<Workload>(), Ok(Workload::Put));
        assert_eq!("get".parse::<Workload>(), Ok(Workload::Get));
        assert_eq!("get-stale".parse::<Workload>(), Ok(Workload::GetStale));
        assert_eq!("incr".parse::<Workload>(), Ok(Workload::Incr));
        assert_eq!("cas".parse::<Workload>(), Ok(Workload::Cas));
        assert_eq!("mixed:90/10".parse::<Workload>(), Ok(Workload::Mixed(Mix { reads: 90, writes: 10 })));
        assert_eq!("mixed".parse::<Workload>(), Ok(Workload::Mixed(Mix { reads: 90, writes: 10 })));
    }

    #[test]
    fn display_round_trips() {
        for s in ["put", "get", "get-stale", "mixed:3/1", "incr", "cas"] {
            assert_eq!(s.parse::<Workload>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_workloads_and_mixes() {
        for bad in ["", "PUT", "delete", "mixed:", "mixed:90", "mixed:a/b", "mixed:0/0", "mixed:-1/5"] {
            assert!(bad.parse::<Workload>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn mix_choice_follows_the_ratio_exactly_over_one_period() {
        let mix = Mix { reads: 90, writes: 10 };
        let reads = (0..100).filter(|&r| mix.choose(r) == OpKind::Get).count();
        assert_eq!(reads, 90);
        let all_reads = Mix { reads: 1, writes: 0 };
        assert!((0..50).all(|r| all_reads.choose(r) == OpKind::Get));
        let all_writes = Mix { reads: 0, writes: 7 };
        assert!((0..50).all(|r| all_writes.choose(r) == OpKind::Put));
    }

    #[test]
    fn mix_choice_with_random_draws_is_close_to_the_ratio() {
        let mix = Mix { reads: 90, writes: 10 };
        let mut rng = Rng::new(42);
        let n = 100_000;
        let writes = (0..n).filter(|_| mix.choose(rng.next_u64()) == OpKind::Put).count();
        let share = writes as f64 / n as f64;
        assert!((0.09..0.11).contains(&share), "write share {share}");
    }

    #[test]
    fn rng_indexes_stay_in_range_and_cover_the_space() {
        let mut rng = Rng::new(7);
        let mut seen = [false; 16];
        for _ in 0..1000 {
            let i = rng.below(16);
            seen[i] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn key_names_have_fixed_width() {
        assert_eq!(key_name(0), "bench-00000000");
        assert_eq!(key_name(9_999).len(), key_name(0).len());
    }

    #[test]
    fn preload_defaults_cover_read_workloads_only() {
        assert!(Workload::Get.reads_existing_keys());
        assert!(Workload::GetStale.reads_existing_keys());
        assert!(Workload::Mixed(Mix { reads: 1, writes: 1 }).reads_existing_keys());
        assert!(!Workload::Put.reads_existing_keys());
        assert!(!Workload::Incr.reads_existing_keys());
    }
}

//! Running the load: the preload, the client tasks (closed or open loop), and the progress line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

use super::report::{Outcome, Recorder};
use super::target::Routes;
use super::workload::{OpKind, Rng, Workload};
use crate::http1::{self, Conn};

/// How every bench connection is made: the TLS configuration for https endpoints (see
/// `tls::client_config`) and the `Authorization` header, when either is needed.
#[derive(Clone, Copy)]
pub struct ConnSetup<'a> {
    pub tls: Option<&'a rustls::ClientConfig>,
    pub token: Option<&'a HeaderValue>,
}

impl ConnSetup<'_> {
    /// One keep-alive connection to `base` with this setup.
    pub fn open(&self, base: &reqwest::Url, timeout: Duration) -> Result<Conn, String> {
        let mut headers = Vec::new();
        if let Some(t) = self.token {
            headers.push(("Authorization", t.to_str().map_err(|e| e.to_string())?.to_string()));
        }
        let opts = http1::Options {
            timeout,
            tls: self.tls.map(|c| Arc::new(c.clone())),
            local_ip: None,
            headers,
            content_type: "application/json",
            // Bench requests include increments, which must not be sent twice.
            retry_stale: false,
        };
        Conn::new(base, &opts)
    }
}

/// `Bearer <token>`, marked sensitive so it never shows up in debug output.
pub fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "--token must be printable ASCII".to_string())?;
    v.set_sensitive(true);
    Ok(v)
}

/// Builds the reqwest client for the bench's control requests (discovery, markers). The load
/// itself goes through `Conn`, one per bench client.
pub fn http_client(timeout: Duration, conn: &ConnSetup) -> Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    if let Some(t) = conn.token {
        headers.insert(AUTHORIZATION, t.clone());
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        // A redirect would send a write somewhere we did not choose; neither system redirects.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(tls) = conn.tls {
        builder = builder.use_preconfigured_tls(tls.clone());
    }
    builder.build().map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// Writes every key once through `routes`, `concurrency` at a time. Stops at the first error,
/// because reads of a half-loaded key space would measure misses, not reads.
pub async fn preload(
    base: &reqwest::Url,
    routes: Arc<Routes>,
    keys: usize,
    concurrency: usize,
    timeout: Duration,
    conn: &ConnSetup<'_>,
) -> Result<Duration, String> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.clamp(1, keys.max(1)) {
        let (routes, next, mut conn) = (routes.clone(), next.clone(), conn.open(base, timeout)?);
        tasks.push(tokio::spawn(async move {
            loop {
                let key = next.fetch_add(1, Ordering::Relaxed);
                if key >= keys {
                    return Ok(());
                }
                if let Outcome::Error(e) = routes.perform(&mut conn, OpKind::Put, key).await {
                    // Make the other tasks stop at their next key.
                    next.store(keys, Ordering::Relaxed);
                    return Err(format!("preload of key {key} failed: {e}"));
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("preload task failed: {e}"))??;
    }
    Ok(started.elapsed())
}

/// The run's timeline, shared by all clients.
#[derive(Debug)]
pub struct Schedule {
    pub start: Instant,
    /// Ops that start (or, open loop, are scheduled) before this are warm-up and not recorded.
    pub measure_from: Instant,
    pub end: Instant,
    /// Open loop: the gap between scheduled sends across all clients.
    pub interval: Option<Duration>,
    /// Open loop: the next send slot to claim. Slot `n` is due at `start + n * interval`.
    next_slot: AtomicU64,
    /// Open loop: slots actually sent.
    sent: AtomicU64,
}

impl Schedule {
    pub fn new(warmup: Duration, duration: Duration, rate: Option<f64>) -> Schedule {
        let start = Instant::now();
        Schedule {
            start,
            measure_from: start + warmup,
            end: start + warmup + duration,
            interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            next_slot: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// Open loop: when slot `n` is due.
    fn slot_time(&self, n: u64) -> Instant {
        let iv = self.interval.unwrap_or_default();
        self.start + Duration::from_secs_f64(iv.as_secs_f64() * n as f64)
    }

    /// Open loop: scheduled sends that were never issued because the run ended first.
    pub fn unsent(&self) -> u64 {
        let Some(iv) = self.interval else { return 0 };
        let scheduled = ((self.end - self.start).as_secs_f64() / iv.as_secs_f64()).ceil() as u64;
        scheduled.saturating_sub(self.sent.load(Ordering::Relaxed))
    }
}

/// Counters the progress line reads; covers warm-up too, unlike the recorder.
#[derive(Debug, Default)]
pub struct Live {
    ok: AtomicU64,
    errors: AtomicU64,
    latency_us: AtomicU64,
}

/// Everything one client task needs.
pub struct Client {
    pub seed: u64,
    pub routes: Arc<Routes>,
    pub conn: Conn,
}

/// Runs `clients` until the schedule ends and returns what the measurement window recorded.
pub async fn drive(workload: Workload, keys: usize, schedule: Arc<Schedule>, clients: Vec<Client>) -> Recorder {
    // A std Mutex, not tokio's: it is held only to record one sample, never across an await, and
    // one shared recorder keeps memory flat (a 3-digit histogram per client would cost ~200 KB
    // each at 256 clients).
    let recorder = Arc::new(Mutex::new(Recorder::new(workload)));
    let live = Arc::new(Live::default());
    let progress = tokio::spawn(progress(schedule.clone(), live.clone()));
    let mut tasks = Vec::new();
    for c in clients {
        let (schedule, live, recorder) = (schedule.clone(), live.clone(), recorder.clone());
        tasks.push(tokio::spawn(client_loop(c, workload, keys, schedule, live, recorder)));
    }
    for t in tasks {
        if let Err(e) = t.await {
            eprintln!("bench: a client task failed: {e}");
        }
    }
    progress.abort();
    match Arc::try_unwrap(recorder) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        // Unreachable once every task is joined; taking the contents keeps it total anyway.
        Err(shared) => {
            std::mem::replace(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()), Recorder::new(workload))
        }
    }
}

async fn client_loop(
    mut c: Client,
    workload: Workload,
    keys: usize,
    schedule: Arc<Schedule>,
    live: Arc<Live>,
    recorder: Arc<Mutex<Recorder>>,
) {
    let mut rng = Rng::new(c.seed);
    loop {
        // Latency is measured from when the op was due: in open loop that is its slot time, so
        // time spent queued behind a slow server counts (coordinated-omission correction).
        let due = if schedule.interval.is_some() {
            let slot = schedule.next_slot.fetch_add(1, Ordering::Relaxed);
            let due = schedule.slot_time(slot);
            if due >= schedule.end || Instant::now() >= schedule.end {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            schedule.sent.fetch_add(1, Ordering::Relaxed);
            due
        } else {
            let now = Instant::now();
            if now >= schedule.end {
                break;
            }
            now
        };
        let kind = workload.next_op(rng.next_u64());
        let key = rng.below(keys);
        let outcome = c.routes.perform(&mut c.conn, kind, key).await;
        let latency = due.elapsed();
        if matches!(&outcome, Outcome::Error(e) if e == "connect") {
            // A refused connection fails in microseconds; spinning on it would take the CPU
            // the servers under test share with us.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let counter = if matches!(outcome, Outcome::Error(_)) { &live.errors } else { &live.ok };
        counter.fetch_add(1, Ordering::Relaxed);
        live.latency_us.fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        if due >= schedule.measure_from {
            let mut rec = recorder.lock().unwrap_or_else(|p| p.into_inner());
            rec.record(kind, &outcome, latency);
        }
    }
}

/// One line a second on stderr: phase, throughput and mean latency over that second, errors.
async fn progress(schedule: Arc<Schedule>, live: Arc<Live>) {
    let tick = Duration::from_secs(1);
    let mut interval = tokio::time::interval_at((schedule.start + tick).into(), tick);
    let (mut last_ok, mut last_err, mut last_lat) = (0u64, 0u64, 0u64);
    loop {
        interval.tick().await;
        let now = Instant::now();
        if now > schedule.end + tick {
            return;
        }
        let ok = live.ok.load(Ordering::Relaxed);
        let errors = live.errors.load(Ordering::Relaxed);
        let lat = live.latency_us.load(Ordering::Relaxed);
        let done = (ok - last_ok) + (errors - last_err);
        let mean_ms = if done > 0 { (lat - last_lat) as f64 / done as f64 / 1000.0 } else { 0.0 };
        // The line covers the second that just ended; it is warm-up if that second began in it.
        let phase = if now - tick < schedule.measure_from { "warmup " } else { "measure" };
        eprintln!(
            "[{:>4}s] {phase} {:>9} ok/s  mean {mean_ms:>8.2} ms  errors {errors}",
            (now - schedule.start).as_secs(),
            ok - last_ok,
        );
        (last_ok, last_err, last_lat) = (ok, errors, lat);
    }
}

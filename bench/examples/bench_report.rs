//! The performance report: cos next to its transports' floors and its peers, measured side by
//! side in one run, with the project's targets marked PASS or MISS, printed as one table.
//!
//! ```text
//! cargo run --release -p cos-bench --example bench_report              # thread and process rows
//! cargo run --release -p cos-bench --example bench_report -- --quick   # fewer, shorter batches
//! ```
//!
//! Every timed row is the median of several batches and its ratio to a reference measured in
//! the same run; the floors (channel, Unix-socket and MPI ping-pong, bare corosensei) are
//! programs in this file, the Unix-socket echo and the large-N rows run in fresh child
//! processes (this executable started again). `docs/performance.md` explains the rows.
//!
//! Under `mpirun` (detected, or `--vm mpi`), with the `mpi` feature, it measures the MPI
//! machine's rows and the MPI ping-pong floor instead:
//!
//! ```text
//! cargo build --release -p cos-bench --features mpi --example bench_report
//! mpirun --oversubscribe -n 3 target/release/examples/bench_report --vm mpi
//! ```

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use cos::{Registry, RemoteCall, RemoteFn};

/// The trivial remote job.
static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);
/// A CPU-bound job: spins on the clock for the given microseconds.
static SPIN: RemoteFn<u64, u64> = RemoteFn::new("spin_us", |us| {
    let end = Instant::now() + Duration::from_micros(us);
    let mut n = 0u64;
    while Instant::now() < end {
        n = black_box(n + 1);
    }
    n
});
/// A job that sleeps for the given milliseconds.
static SLEEP: RemoteFn<u64, u64> = RemoteFn::new("sleep_ms", |ms| {
    std::thread::sleep(Duration::from_millis(ms));
    ms
});

/// Where a worker runs and how much CPU it has used, after sleeping the given milliseconds:
/// (process id, thread id, CPU of its process, CPU of its thread; nanoseconds).
static PROBE: RemoteFn<u64, (u32, i64, u64, u64)> = RemoteFn::new("probe", |ms| {
    std::thread::sleep(Duration::from_millis(ms));
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let ns = |d: Duration| d.as_nanos() as u64;
    (std::process::id(), tid, ns(cpu_time(libc::RUSAGE_SELF)), ns(cpu_time(libc::RUSAGE_THREAD)))
});

fn registry() -> Registry {
    let r = Registry::new().with(&DOUBLE).with(&SPIN).with(&SLEEP).with(&PROBE);
    #[cfg(feature = "mpi")]
    let r = r.with(&mpi_floor::ECHO);
    r
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// The median of repeated timed batches, as time per operation.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Median seconds per operation.
    median: f64,
    /// Fastest and slowest batch, seconds per operation.
    min: f64,
    max: f64,
}

impl Sample {
    fn from_per_op(mut v: Vec<f64>) -> Sample {
        v.sort_by(f64::total_cmp);
        Sample { median: v[v.len() / 2], min: v[0], max: v[v.len() - 1] }
    }

    /// The spread of the batches around the median, in percent.
    fn spread(&self) -> f64 {
        100.0 * (self.max - self.min) / self.median
    }
}

/// Runs `batch(n)` once to warm up, then `reps` times, timing each; `n` operations a batch.
fn measure(reps: usize, n: u64, mut batch: impl FnMut(u64)) -> Sample {
    batch(n.div_ceil(10).max(1));
    let per_op = (0..reps)
        .map(|_| {
            let t = Instant::now();
            batch(n);
            t.elapsed().as_secs_f64() / n as f64
        })
        .collect();
    Sample::from_per_op(per_op)
}

/// This process's resident memory, from `/proc/self/status`.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// CPU time (user + system) used so far, by the whole process or by the calling thread.
fn cpu_time(who: i32) -> Duration {
    // SAFETY: getrusage only writes the struct it is given, which is zeroed and ours.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `who` is RUSAGE_SELF or RUSAGE_THREAD and `ru` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---------------------------------------------------------------------------------------------
// The table

/// How a row is shown.
#[derive(Clone, Copy)]
enum Unit {
    /// Seconds per operation.
    Time,
    /// Operations per second (the sample is still time per operation).
    Rate,
    /// Bytes.
    Bytes,
    /// A share of one core (or of the cores in use), in percent.
    Percent,
    /// A plain count.
    Count,
}

struct Row {
    group: &'static str,
    name: String,
    /// The value: seconds per operation for Time and Rate, else the unit's number.
    value: f64,
    spread: Option<f64>,
    unit: Unit,
    /// The reference's name and the ratio value / reference (for rates: rate / reference rate).
    reference: Option<(String, f64)>,
    /// The target and whether it is met.
    target: Option<(String, bool)>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

fn fmt_time(s: f64) -> String {
    if s < 1e-6 {
        format!("{:.1} ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:.2} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn fmt_rate(per_op: f64) -> String {
    let r = 1.0 / per_op;
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.1} /s")
    }
}

impl Report {
    fn row(&mut self, group: &'static str, name: impl Into<String>, unit: Unit, value: f64) -> &mut Row {
        self.rows.push(Row {
            group,
            name: name.into(),
            value,
            spread: None,
            unit,
            reference: None,
            target: None,
        });
        self.rows.last_mut().expect("just pushed")
    }

    fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("note: {text}");
        self.notes.push(text);
    }

    fn print(&self) {
        let header = ["group", "measurement", "median", "spread", "reference", "ratio", "target", "verdict"];
        let mut lines: Vec<[String; 8]> = Vec::new();
        for r in &self.rows {
            let value = match r.unit {
                Unit::Time => fmt_time(r.value),
                Unit::Rate => fmt_rate(r.value),
                Unit::Bytes => format!("{:.2} KiB", r.value / 1024.0),
                Unit::Percent => format!("{:.2} %", r.value),
                Unit::Count => format!("{:.0}", r.value),
            };
            let (reference, ratio) = match &r.reference {
                Some((n, x)) => (n.clone(), format!("{x:.3}")),
                None => ("-".into(), "-".into()),
            };
            let (target, verdict) = match &r.target {
                Some((t, ok)) => (t.clone(), if *ok { "PASS" } else { "MISS" }.to_string()),
                None => ("-".into(), "-".into()),
            };
            let spread = r.spread.map_or("-".into(), |s| format!("±{:.0} %", s / 2.0));
            lines.push([r.group.into(), r.name.clone(), value, spread, reference, ratio, target, verdict]);
        }
        let mut widths = header.map(str::len);
        for l in &lines {
            for (w, c) in widths.iter_mut().zip(l) {
                *w = (*w).max(c.chars().count());
            }
        }
        let show = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        show(&header.map(String::from));
        println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
        for l in &lines {
            show(l);
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("- {n}");
            }
        }
    }
}

impl Row {
    fn sample(&mut self, s: Sample) -> &mut Row {
        self.spread = Some(s.spread());
        self
    }

    fn reference(&mut self, name: impl Into<String>, ratio: f64) -> &mut Row {
        self.reference = Some((name.into(), ratio));
        self
    }

    fn target(&mut self, text: impl Into<String>, ok: bool) -> &mut Row {
        self.target = Some((text.into(), ok));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// How long the run takes

/// Batch sizes: `--quick` runs five batches of a tenth of the operations, for CI.
#[derive(Clone, Copy)]
struct Cfg {
    quick: bool,
}

impl Cfg {
    /// Timed batches of a row (the warm-up batch comes on top).
    fn reps(self, full: usize) -> usize {
        if self.quick {
            full.min(5)
        } else {
            full
        }
    }

    /// Operations in one batch.
    fn n(self, full: u64) -> u64 {
        if self.quick {
            (full / 10).max(1)
        } else {
            full
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Floor programs

fn corosensei_round_trip(cfg: Cfg) -> Sample {
    use corosensei::{Coroutine, CoroutineResult};
    let mut co = Coroutine::<(), (), (), _>::new(|y, ()| loop {
        y.suspend(());
    });
    measure(cfg.reps(11), cfg.n(2_000_000), |n| {
        for _ in 0..n {
            black_box(matches!(co.resume(()), CoroutineResult::Yield(())));
        }
    })
}

/// Ping-pong with an echo thread over two crossbeam channels. `spinning`: both sides poll with
/// `try_recv` and never sleep; else both block in `recv` (which spins briefly, then parks).
fn channel_round_trip(cfg: Cfg, spinning: bool) -> Sample {
    use crossbeam_channel::{Receiver, TryRecvError};
    fn recv(rx: &Receiver<u64>, spinning: bool) -> Option<u64> {
        if !spinning {
            return rx.recv().ok();
        }
        loop {
            match rx.try_recv() {
                Ok(x) => return Some(x),
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
                Err(TryRecvError::Disconnected) => return None,
            }
        }
    }
    let (to_tx, to_rx) = crossbeam_channel::unbounded::<u64>();
    let (back_tx, back_rx) = crossbeam_channel::unbounded::<u64>();
    let echo = std::thread::spawn(move || {
        while let Some(x) = recv(&to_rx, spinning) {
            if back_tx.send(x).is_err() {
                break;
            }
        }
    });
    let s = measure(cfg.reps(11), cfg.n(20_000), |n| {
        for i in 0..n {
            to_tx.send(i).expect("echo thread alive");
            black_box(recv(&back_rx, spinning).expect("echo thread alive"));
        }
    });
    drop(to_tx);
    echo.join().expect("echo thread");
    s
}

fn postcard_job(cfg: Cfg) -> Sample {
    measure(cfg.reps(11), cfg.n(500_000), |n| {
        for i in 0..n {
            let call = RemoteCall::new("double", &black_box(i)).expect("encodes");
            let bytes = postcard::to_stdvec(&call).expect("encodes");
            let back: RemoteCall = postcard::from_bytes(&bytes).expect("decodes");
            let arg: u64 = postcard::from_bytes(&back.args).expect("decodes");
            black_box(arg);
        }
    })
}

/// The environment variable that makes this executable one of the report's child programs.
const CHILD_ENV: &str = "COS_BENCH_CHILD";
/// The socket path of the Unix-socket echo child.
const SOCKET_ENV: &str = "COS_BENCH_SOCKET";

/// This executable started again as the child program `mode` (no arguments, so no `--vm`).
fn child(mode: &str) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| std::env::args().next().unwrap_or_default().into());
    let mut c = Command::new(exe);
    c.env(CHILD_ENV, mode).env_remove("COS_VM").stdin(Stdio::null());
    c
}

/// Runs a child program: `socket-echo spinning|blocking` echoes 8-byte messages on the socket at
/// `$COS_BENCH_SOCKET` until it is closed; `spawn-all N ROUNDS REPS` prints the per-task time of spawning N tasks and
/// joining them all with `join_any`, in this fresh process.
fn child_main(mode: &str) -> Result<(), String> {
    let words: Vec<&str> = mode.split_whitespace().collect();
    match words.as_slice() {
        ["socket-echo", how] => {
            let path = std::env::var_os(SOCKET_ENV).ok_or("no socket path")?;
            let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| e.to_string())?;
            s.set_nonblocking(*how == "spinning").map_err(|e| e.to_string())?;
            let mut buf = [0u8; 8];
            while read_full(&mut s, &mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
            Ok(())
        }
        ["spawn-all", n, rounds, reps] => {
            let num = |w: &str| w.parse::<u64>().map_err(|e| format!("{w}: {e}"));
            let s = spawn_all_join_all(num(reps)? as usize, num(n)?, num(rounds)?);
            println!("per_task {} {} {}", s.median, s.min, s.max);
            Ok(())
        }
        _ => Err(format!("unknown child program {mode:?}")),
    }
}

/// Reads exactly `buf.len()` bytes; on a non-blocking socket it spins until they are there.
fn read_full(s: &mut std::os::unix::net::UnixStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Unix-socket ping-pong of 8 bytes with a child process (this executable started again).
/// `spinning`: both sides read without blocking, in a loop; else both block in `read`.
fn socket_round_trip(cfg: Cfg, spinning: bool) -> Result<Sample, String> {
    use std::os::unix::net::UnixListener;
    let path = std::env::temp_dir().join(format!("cos-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let how = if spinning { "socket-echo spinning" } else { "socket-echo blocking" };
    let mut echo = child(how).env(SOCKET_ENV, &path).spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let accepted = loop {
        match listener.accept() {
            Ok((s, _)) => break Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline || echo.try_wait().ok().flatten().is_some() {
                    break Err("the echo child did not connect".to_string());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    let _ = std::fs::remove_file(&path);
    let mut s = match accepted {
        Ok(s) => s,
        Err(e) => {
            let _ = echo.kill();
            let _ = echo.wait();
            return Err(e);
        }
    };
    s.set_nonblocking(spinning).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 8];
    let sample = measure(cfg.reps(11), cfg.n(5_000), |n| {
        for i in 0..n {
            s.write_all(&i.to_le_bytes()).expect("echo child alive");
            read_full(&mut s, &mut buf).expect("echo child alive");
            black_box(buf);
        }
    });
    drop(s);
    let _ = echo.wait();
    Ok(sample)
}

/// MPI ping-pong between rank 0 and one worker rank. The MPI machine owns MPI (it initializes
/// it, and the other ranks serve jobs inside it), so the worker's side of the ping-pong runs as
/// one remote job that echoes on its own tag while rank 0 sends from the main program; both
/// sides use MPI's plain blocking send and receive.
#[cfg(feature = "mpi")]
mod mpi_floor {
    use super::{measure, Cfg, Sample};
    use mpi::point_to_point::{Destination, Source};
    use mpi::topology::{Communicator, SimpleCommunicator};
    use std::hint::black_box;

    /// A tag the MPI machine does not use.
    const TAG: mpi::Tag = 7001;

    /// The worker's side: says which rank it is, then echoes `n` messages.
    pub static ECHO: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("bench_mpi_echo", |n| {
        let world = SimpleCommunicator::world();
        let root = world.process_at_rank(0);
        root.send_with_tag(&world.rank(), TAG);
        for _ in 0..n {
            let (x, _) = root.receive_with_tag::<u64>(TAG);
            root.send_with_tag(&x, TAG);
        }
        n
    });

    pub fn round_trip(cfg: Cfg) -> Result<Sample, cos::Error> {
        let (reps, n) = (cfg.reps(11), cfg.n(20_000));
        let total = n.div_ceil(10).max(1) + reps as u64 * n;
        let echo = cos::spawn_remote(&ECHO, total)?;
        let world = SimpleCommunicator::world();
        let (rank, _) = world.any_process().receive_with_tag::<mpi::Rank>(TAG);
        let peer = world.process_at_rank(rank);
        let s = measure(reps, n, |n| {
            for i in 0..n {
                peer.send_with_tag(&i, TAG);
                black_box(peer.receive_with_tag::<u64>(TAG));
            }
        });
        cos::join(echo)?;
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Local

/// Runs `f` while one other task yields in a loop; the task ends before this returns.
fn with_spinner<R>(f: impl FnOnce() -> R) -> R {
    let stop = Rc::new(Cell::new(false));
    let s2 = Rc::clone(&stop);
    let spinner = cos::spawn(move || {
        while !s2.get() {
            cos::yield_now();
        }
    })
    .expect("stack");
    let r = f();
    stop.set(true);
    cos::join(spinner).expect("spinner ends");
    r
}

fn cos_yield_round_trip(cfg: Cfg) -> Sample {
    with_spinner(|| {
        measure(cfg.reps(11), cfg.n(1_000_000), |n| {
            for _ in 0..n {
                cos::yield_now();
            }
        })
    })
}

fn cos_yield_round_trip_n(n: u64) {
    with_spinner(|| {
        for _ in 0..n {
            cos::yield_now();
        }
    })
}

fn cos_spawn_join(cfg: Cfg) -> Sample {
    measure(cfg.reps(11), cfg.n(300_000), |n| {
        for i in 0..n {
            let t = cos::spawn(move || black_box(i)).expect("stack");
            black_box(cos::join(t).expect("joins"));
        }
    })
}

fn tokio_spawn_join(cfg: Cfg) -> Sample {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let n = cfg.n(300_000);
        let mut per_op = Vec::new();
        for rep in 0..=cfg.reps(11) {
            let t = Instant::now();
            for i in 0..n {
                black_box(tokio::task::spawn_local(async move { black_box(i) }).await.expect("joins"));
            }
            if rep > 0 {
                per_op.push(t.elapsed().as_secs_f64() / n as f64);
            }
        }
        Sample::from_per_op(per_op)
    })
}

/// may's go! + join, from inside a coroutine on a one-worker scheduler (as cos and LocalSet run
/// on one thread).
fn may_spawn_join(cfg: Cfg) -> Sample {
    may::config().set_workers(1);
    let outer = may::go!(move || {
        measure(cfg.reps(11), cfg.n(100_000), |n| {
            for i in 0..n {
                black_box(may::go!(move || black_box(i)).join().expect("joins"));
            }
        })
    });
    outer.join().expect("may coroutine")
}

fn thread_spawn_join(cfg: Cfg) -> Sample {
    measure(cfg.reps(11), cfg.n(2_000), |n| {
        for i in 0..n {
            black_box(std::thread::spawn(move || black_box(i)).join().expect("joins"));
        }
    })
}

/// Per-task time of spawning `n` trivial local tasks, then joining them all; `rounds` times a
/// batch, so that small `n` make batches long enough to time.
fn spawn_all_join_all(reps: usize, n: u64, rounds: u64) -> Sample {
    measure(reps, n * rounds, |total| {
        for _ in 0..total.div_ceil(n) {
            for i in 0..n {
                cos::spawn(move || black_box(i)).expect("stack");
            }
            let mut joined = 0;
            while cos::join_any().expect("joins").is_some() {
                joined += 1;
            }
            assert_eq!(joined, n);
        }
    })
}

/// The per-task time of [`spawn_all_join_all`] in a fresh child process.
fn spawn_all_fresh(reps: usize, n: u64, rounds: u64) -> Result<Sample, String> {
    let out = child(&format!("spawn-all {n} {rounds} {reps}")).stderr(Stdio::inherit()).output();
    let out = out.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("per_task "))
        .ok_or_else(|| format!("the child printed no result (status {})", out.status))?;
    let v: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match v.as_slice() {
        [median, min, max] => Ok(Sample { median: *median, min: *min, max: *max }),
        _ => Err(format!("unreadable child result {line:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Memory

enum Memory {
    PerTask(f64),
    Skipped { created: usize, error: String },
    NoProc,
}

/// Resident bytes per suspended task: a chain of `n` tasks, each waiting in a join on the next
/// (so that only the last one and the main program take turns while the chain grows).
fn memory_per_task(n: usize) -> Memory {
    struct Chain {
        n: usize,
        created: Cell<usize>,
        release: Cell<bool>,
        error: RefCell<Option<String>>,
    }
    fn link(chain: Rc<Chain>) {
        chain.created.set(chain.created.get() + 1);
        if chain.created.get() < chain.n {
            let next = Rc::clone(&chain);
            match cos::spawn(move || link(next)) {
                Ok(t) => {
                    cos::join(t).expect("the next link ends");
                    return;
                }
                Err(e) => *chain.error.borrow_mut() = Some(e.to_string()),
            }
        }
        while !chain.release.get() {
            cos::yield_now();
        }
    }

    let Some(before) = rss_bytes() else { return Memory::NoProc };
    let chain =
        Rc::new(Chain { n, created: Cell::new(0), release: Cell::new(false), error: RefCell::new(None) });
    let c2 = Rc::clone(&chain);
    let root = match cos::spawn(move || link(c2)) {
        Ok(t) => t,
        Err(e) => return Memory::Skipped { created: 0, error: e.to_string() },
    };
    while chain.created.get() < n && chain.error.borrow().is_none() {
        cos::yield_now();
    }
    let after = rss_bytes().unwrap_or(before);
    let created = chain.created.get();
    chain.release.set(true);
    cos::join(root).expect("the chain ends");
    let error = chain.error.borrow_mut().take();
    match error {
        Some(error) => Memory::Skipped { created, error },
        None => Memory::PerTask(after.saturating_sub(before) as f64 / created as f64),
    }
}

// ---------------------------------------------------------------------------------------------
// Machines: the same rows on every machine, whichever is set

/// A transport's floor: its name and round-trip time in seconds.
struct Floor {
    name: String,
    round_trip: f64,
}

/// Time per trivial job through `cos::dispatch`, `n` jobs a batch, on the machine that is set;
/// with the CPU time `who` (RUSAGE_THREAD or RUSAGE_SELF) spent per job over all batches.
fn dispatch_trivial(reps: usize, n: u64, who: i32) -> (Sample, f64) {
    let cpu0 = cpu_time(who);
    let s = measure(reps, n, |n| {
        let r = cos::dispatch((0..n).map(|i| cos::job(&DOUBLE, i))).expect("dispatch");
        assert_eq!(r.len() as u64, n);
        black_box(r);
    });
    let jobs = n.div_ceil(10).max(1) + reps as u64 * n;
    (s, (cpu_time(who) - cpu0).as_secs_f64() / jobs as f64)
}

/// Time of one job from spawn to joined value, on the machine that is set.
fn remote_latency(reps: usize, n: u64) -> Sample {
    measure(reps, n, |n| {
        for i in 0..n {
            black_box(cos::dispatch_single(cos::job(&DOUBLE, i)).expect("job"));
        }
    })
}

/// What [`machine_rows`] measured, for the model.
struct Measured {
    round_trip: f64,
    spawner_per_job: f64,
    workers: usize,
}

/// One job's round trip and trivial-job throughput on the machine that is set, next to its
/// transport's floor. `who` says whose CPU is the spawner's: the main thread (RUSAGE_THREAD) when
/// workers are threads of this process, else the process.
fn machine_rows(rep: &mut Report, cfg: Cfg, label: &str, who: i32, floor: &Floor, jobs: u64) -> Measured {
    let workers = cos::free_slots().unwrap_or(0);
    let lat = remote_latency(cfg.reps(11), cfg.n(jobs / 4).max(20));
    let ratio = lat.median / floor.round_trip;
    rep.row("machine", format!("{label}: one job's round trip"), Unit::Time, lat.median)
        .sample(lat)
        .reference(format!("{} {}", floor.name, fmt_time(floor.round_trip)), ratio)
        .target("<= 2x floor", ratio <= 2.0);
    let (s, spawner) = dispatch_trivial(cfg.reps(11), cfg.n(jobs).max(20), who);
    let ratio = floor.round_trip / s.median;
    rep.row("machine", format!("{label}: trivial jobs, {workers} workers"), Unit::Rate, s.median)
        .sample(s)
        .reference(format!("its floor's rate {}", fmt_rate(floor.round_trip)), ratio)
        .target(">= 0.5x floor rate", ratio >= 0.5);
    Measured { round_trip: lat.median, spawner_per_job: spawner, workers }
}

/// Idle CPU over a 1 s wait: the spawner's (`who`, as in [`machine_rows`]) while it waits on a
/// job that sleeps 1 s, and every worker's over the same second (one of them sleeps in that job,
/// the others wait for work). A probe job on every worker before and after reads its CPU time.
fn idle_rows(rep: &mut Report, label: &str, who: i32) {
    let workers = cos::free_slots().unwrap_or(0);
    let probe = || -> Vec<(u32, i64, u64, u64)> {
        let r = cos::dispatch((0..workers).map(|_| cos::job(&PROBE, 30))).expect("probe jobs");
        r.into_iter().filter_map(Result::ok).collect()
    };
    let before = probe();
    let w0 = Instant::now();
    let (c0, t0) = (cpu_time(who), Instant::now());
    assert_eq!(cos::dispatch_single(cos::job(&SLEEP, 1000)).expect("sleep job"), 1000);
    let spawner = 100.0 * (cpu_time(who) - c0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let after = probe();
    let wall = w0.elapsed().as_secs_f64();
    // Worker threads of this process are told apart by thread, worker processes by process.
    let threads = before.iter().all(|p| p.0 == std::process::id());
    let key = |p: &(u32, i64, u64, u64)| if threads { (p.0, p.1) } else { (p.0, 0) };
    let cpu = |p: &(u32, i64, u64, u64)| if threads { p.3 } else { p.2 };
    let first: BTreeMap<_, _> = before.iter().map(|p| (key(p), cpu(p))).collect();
    let shares: Vec<f64> = after
        .iter()
        .filter_map(|p| first.get(&key(p)).map(|c0| 100.0 * cpu(p).saturating_sub(*c0) as f64 * 1e-9 / wall))
        .collect();
    let spawner_what = if who == libc::RUSAGE_THREAD { "spawner thread" } else { "spawner process" };
    rep.row("idle", format!("{label}: {spawner_what} CPU, waiting 1 s on a job"), Unit::Percent, spawner)
        .reference("one core", spawner / 100.0)
        .target("< 2 % of a core", spawner < 2.0);
    match shares.iter().copied().reduce(f64::max) {
        Some(worst) => {
            rep.row(
                "idle",
                format!("{label}: worker CPU over that second, worst of {}", shares.len()),
                Unit::Percent,
                worst,
            )
            .reference("one core", worst / 100.0)
            .target("< 2 % of a core", worst < 2.0);
        }
        None => rep.note(format!("{label}: the probe jobs found no worker twice; no worker idle row")),
    }
}

/// The share of two cores kept busy by 1 ms CPU jobs: two local tasks each run `per_task` jobs
/// one after another (so two jobs are in flight at any time, whatever the machine's slot count).
/// `plain` is the share two plain threads got with the same spins ([`busy_plain_threads`]).
fn busy_rows(rep: &mut Report, cfg: Cfg, label: &str, plain: f64) {
    let per_task = cfg.n(100).max(20);
    let fractions = (0..=cfg.reps(7))
        .map(|_| {
            let t = Instant::now();
            let tasks: Vec<_> = (0..2)
                .map(|_| {
                    cos::spawn(move || {
                        for _ in 0..per_task {
                            cos::dispatch_single(cos::job(&SPIN, 1000)).expect("spin job");
                        }
                    })
                    .expect("stack")
                })
                .collect();
            for task in tasks {
                cos::join(task).expect("task ends");
            }
            (per_task as f64 * 1e-3) / t.elapsed().as_secs_f64()
        })
        .skip(1)
        .collect();
    let s = Sample::from_per_op(fractions);
    rep.row(
        "busy",
        format!("{label}: 1 ms jobs on 2 workers, busy share of 2 cores"),
        Unit::Percent,
        100.0 * s.median,
    )
    .sample(s)
    .reference(format!("plain threads {:.1} %", 100.0 * plain), s.median / plain)
    .target(">= 95 %", s.median >= 0.95);
}

/// The same 1 ms spins on two plain threads: what the machine itself gives at this moment (a
/// spin ends by the clock, so a thread that loses its core overshoots). Returns the share.
fn busy_plain_threads(rep: &mut Report, cfg: Cfg) -> f64 {
    let per_thread = cfg.n(100).max(20);
    let fractions = (0..=cfg.reps(7))
        .map(|_| {
            let t = Instant::now();
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    std::thread::spawn(move || {
                        for _ in 0..per_thread {
                            black_box(SPIN.call(1000));
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().expect("spinning thread");
            }
            (per_thread as f64 * 1e-3) / t.elapsed().as_secs_f64()
        })
        .skip(1)
        .collect();
    let s = Sample::from_per_op(fractions);
    rep.row("busy", "plain threads, the same 1 ms spins on 2 threads", Unit::Percent, 100.0 * s.median)
        .sample(s)
        .reference("all of 2 cores", s.median);
    s.median
}

/// The model of one spawner: each job costs the spawner `c` (its CPU per trivial job) and a
/// worker waits one round trip `L` between jobs, so with jobs of `T` seconds, W workers do
/// min(W / (T + L), 1 / c) jobs/s: the curve rises with W and bends flat at W = (T + L) / c.
fn model_rows(rep: &mut Report, label: &str, m: &Measured, target: bool) {
    let c = m.spawner_per_job;
    rep.row(
        "model",
        format!("{label}: spawner CPU per trivial job, c ({} workers)", m.workers),
        Unit::Time,
        c,
    );
    let r = rep.row("model", format!("{label}: one spawner's limit, 1/c"), Unit::Rate, c);
    if target {
        r.target(">= 100 k/s (model)", 1.0 / c >= 100_000.0);
    }
    for ms in [1.0, 10.0, 100.0] {
        let bend = (ms * 1e-3 + m.round_trip) / c;
        rep.row(
            "model",
            format!("{label}: workers one spawner keeps busy, {ms:.0} ms jobs (bend at (T+L)/c)"),
            Unit::Count,
            bend,
        );
    }
}

/// Trivial-job throughput on ThreadVm with 1..N workers (up to four per core), next to the
/// model's min(W r1, 1/c): `r1` the one-worker rate (a worker's cycle for a trivial job) and `c`
/// the spawner's CPU per job with the most workers, where it waits least (its waits spin for a
/// few microseconds, so `c` with few workers counts waiting too). The bend is at W = 1/(r1 c).
/// Returns that `c`.
fn thread_scaling_rows(rep: &mut Report, cfg: Cfg) -> f64 {
    let most = most_workers(cfg);
    let widths: Vec<usize> =
        std::iter::successors(Some(1), |w| Some(w * 2)).take_while(|w| *w <= most).collect();
    let runs: Vec<(usize, Sample, f64)> = widths
        .iter()
        .map(|&w| {
            let (s, c) =
                with_thread_vm(w, || dispatch_trivial(cfg.reps(7), cfg.n(20_000), libc::RUSAGE_THREAD));
            (w, s, c)
        })
        .collect();
    let r1 = 1.0 / runs[0].1.median;
    let c = runs[runs.len() - 1].2;
    for (w, s, _) in &runs {
        let model = (*w as f64 * r1).min(1.0 / c);
        rep.row("model", format!("ThreadVm trivial jobs, {w} workers (measured)"), Unit::Rate, s.median)
            .sample(*s)
            .reference(format!("model min(W r1, 1/c) {}", fmt_rate(1.0 / model)), (1.0 / s.median) / model);
    }
    let best = runs.iter().map(|r| r.1.median).fold(f64::INFINITY, f64::min);
    rep.row("model", "ThreadVm trivial jobs: the best of those (one spawner)", Unit::Rate, best)
        .target(">= 100 k/s", 1.0 / best >= 100_000.0);
    rep.row(
        "model",
        format!("ThreadVm trivial jobs: the bend, W = 1/(r1 c), c at {most} workers"),
        Unit::Count,
        1.0 / (r1 * c),
    );
    c
}

/// The most ThreadVm workers [`thread_scaling_rows`] tries: four per core, at most 16.
fn most_workers(cfg: Cfg) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cfg.quick {
        2
    } else {
        (4 * cores).min(16)
    }
}

fn with_thread_vm<R>(workers: usize, f: impl FnOnce() -> R) -> R {
    let vm = cos::ThreadVm::builder(registry()).slots_per_host(workers).build();
    assert_eq!(cos::set_vm(vm), Ok(true));
    let r = f();
    cos::finalize();
    r
}

/// The spawner's time per trivial job with `slots` slots on one simulated host, every slot kept
/// busy: what the machine's slot bookkeeping costs as the machine grows (the simulated machine
/// answers at once, so only the spawner's side is measured).
fn sim_per_job(cfg: Cfg, slots: usize) -> Sample {
    let n = cfg.n(40_000).max(slots as u64 * 4);
    with_sim_vm(slots, || {
        measure(cfg.reps(5), n, |n| {
            black_box(cos::dispatch((0..n).map(|i| cos::job(&DOUBLE, i))).expect("dispatch"));
        })
    })
}

/// Runs `f` with a `SimVm` of `slots` slots on one host set, then finalizes it.
fn with_sim_vm<R>(slots: usize, f: impl FnOnce() -> R) -> R {
    assert_eq!(cos::set_vm(cos::SimVm::new(registry(), 1, slots)), Ok(true));
    let r = f();
    cos::finalize();
    r
}

// ---------------------------------------------------------------------------------------------
// Peers measured in this run (the Python ones: bench/peers/)

/// rayon on a pool of two threads: one job's round trip (`install` from the main thread),
/// trivial jobs each spawned on its own, and the process's CPU while one worker sleeps 1 s.
fn rayon_rows(rep: &mut Report, cfg: Cfg, floor: &Floor) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("rayon pool");
    let lat = measure(cfg.reps(11), cfg.n(20_000), |n| {
        for i in 0..n {
            black_box(pool.install(|| DOUBLE.call(black_box(i))));
        }
    });
    rep.row("peer", "rayon (2 threads): one job's round trip (install)", Unit::Time, lat.median)
        .sample(lat)
        .reference(format!("{} {}", floor.name, fmt_time(floor.round_trip)), lat.median / floor.round_trip);
    let s = measure(cfg.reps(11), cfg.n(100_000), |n| {
        pool.scope(|sc| {
            for i in 0..n {
                sc.spawn(move |_| {
                    black_box(DOUBLE.call(black_box(i)));
                });
            }
        })
    });
    rep.row("peer", "rayon (2 threads): trivial jobs (scope spawn each)", Unit::Rate, s.median)
        .sample(s)
        .reference(format!("its floor's rate {}", fmt_rate(floor.round_trip)), floor.round_trip / s.median);
    let (c0, t0) = (cpu_time(libc::RUSAGE_SELF), Instant::now());
    pool.install(|| std::thread::sleep(Duration::from_secs(1)));
    let share = 100.0 * (cpu_time(libc::RUSAGE_SELF) - c0).as_secs_f64() / t0.elapsed().as_secs_f64();
    rep.row("peer", "rayon (2 threads): process CPU, waiting 1 s on a job", Unit::Percent, share)
        .reference("one core", share / 100.0);
}

// ---------------------------------------------------------------------------------------------

/// The command line: `--quick` shortens every row (CI); `--only GROUP[,GROUP...]` keeps some
/// groups (`memory`, `local`, `thread`, `process`, `peer`, `scaling`; the floors are always
/// measured); `--profile WHAT` runs one operation many times for a profiler instead.
struct Options {
    only: Option<Vec<String>>,
    profile: Option<String>,
    quick: bool,
    mpi: bool,
}

impl Options {
    fn parse() -> Options {
        let mut o = Options { only: None, profile: None, quick: false, mpi: false };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--only" => o.only = args.next().map(|g| g.split(',').map(String::from).collect()),
                "--profile" => o.profile = args.next(),
                "--quick" => o.quick = true,
                "--vm=mpi" => o.mpi = true,
                "--vm" => o.mpi = args.next().as_deref() == Some("mpi"),
                _ => {}
            }
        }
        o
    }

    fn wants(&self, group: &str) -> bool {
        self.only.as_ref().is_none_or(|g| g.iter().any(|x| x == group))
    }
}

/// Whether this process is a rank of an MPI job (OpenMPI, MPICH or PMIx set these).
fn under_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|v| std::env::var_os(v).is_some())
}

/// The load averages (1, 5, 15 min) from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The header line: when, on how many cores, under what load; printed above the table.
fn header(load_start: &str, run: Duration, what: &str) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "cos bench_report ({what}), {date}: {cores} cores; load average (1/5/15 min) {load_start} at the \
         start, {} at the end; {:.0} s. A shared machine: compare the ratios, not the times.",
        load_average(),
        run.as_secs_f64()
    )
}

/// Runs one operation `n` times, for `valgrind --tool=callgrind`.
fn profile(what: &str, n: u64) {
    match what {
        "yield" => cos_yield_round_trip_n(n),
        "vm-yield" => with_thread_vm(2, || cos_yield_round_trip_n(n)),
        "spawn" => {
            for i in 0..n {
                let t = cos::spawn(move || black_box(i)).expect("stack");
                black_box(cos::join(t).expect("joins"));
            }
        }
        "spawn-all" => {
            let rounds = std::env::var("COS_PROFILE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
            for _ in 0..rounds {
                for i in 0..n {
                    cos::spawn(move || black_box(i)).expect("stack");
                }
                while cos::join_any().expect("joins").is_some() {}
            }
        }
        "floor" => {
            use corosensei::Coroutine;
            let mut co = Coroutine::<(), (), (), _>::new(|y, ()| loop {
                y.suspend(());
            });
            for _ in 0..n {
                black_box(co.resume(()));
            }
        }
        "dispatch" => with_thread_vm(1, || {
            black_box(cos::dispatch((0..n).map(|i| cos::job(&DOUBLE, i))).expect("dispatch"));
        }),
        "process-dispatch" => {
            let vm = cos::ProcessVm::builder(registry()).slots_per_host(2).build().expect("workers start");
            assert_eq!(cos::set_vm(vm), Ok(true));
            black_box(cos::dispatch((0..n).map(|i| cos::job(&DOUBLE, i))).expect("dispatch"));
            cos::finalize();
        }
        "sim-dispatch" => {
            let slots = std::env::var("COS_PROFILE_SLOTS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
            with_sim_vm(slots, || {
                black_box(cos::dispatch((0..n).map(|i| cos::job(&DOUBLE, i))).expect("dispatch"));
            });
        }
        other => eprintln!(
            "unknown profile {other:?}: floor, yield, vm-yield, spawn, spawn-all, dispatch, process-dispatch or sim-dispatch"
        ),
    }
}

fn main() -> Result<(), cos::Error> {
    // One of the report's own child programs (the socket echo, a large-N run).
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        if let Err(e) = child_main(&mode) {
            eprintln!("bench_report child: {e}");
            std::process::exit(2);
        }
        return Ok(());
    }
    let opts = Options::parse();
    let mpi = opts.mpi || under_mpirun();
    if mpi && !cfg!(feature = "mpi") {
        eprintln!("bench_report: under mpirun, but built without the mpi feature (--features mpi)");
        std::process::exit(2);
    }
    if mpi && !opts.mpi {
        // The environment names the machine for `cos::start`; nothing else runs yet.
        std::env::set_var("COS_VM", "mpi");
    }
    // A worker process of the process machine, or an MPI worker rank, serves jobs in here and
    // never returns.
    let machine = cos::start(registry())?;
    let cfg = Cfg { quick: opts.quick };
    #[cfg(feature = "mpi")]
    if machine == cos::Machine::Mpi {
        return mpi_report(cfg);
    }
    let _ = machine;
    // The report sets each machine itself; the local rows run with none.
    cos::finalize();

    if let Some(what) = &opts.profile {
        let n = std::env::var("COS_PROFILE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
        profile(what, n);
        return Ok(());
    }

    let run_start = Instant::now();
    let load_start = load_average();
    let mut rep = Report::default();

    // Memory first, while the stack pool is empty and the heap small.
    let memory = opts.wants("memory").then(|| {
        eprintln!("measuring: memory");
        memory_per_task(100_000)
    });

    eprintln!("measuring: floors");
    let coro = corosensei_round_trip(cfg);
    let post = postcard_job(cfg);
    rep.row("floor", "corosensei resume+suspend", Unit::Time, coro.median).sample(coro);
    rep.row("floor", "postcard encode+decode RemoteCall(u64)", Unit::Time, post.median).sample(post);

    if opts.wants("local") {
        eprintln!("measuring: local");
        let yld = cos_yield_round_trip(cfg);
        let vm_yld = with_thread_vm(2, || cos_yield_round_trip(cfg));
        let spawn = cos_spawn_join(cfg);
        let tokio = tokio_spawn_join(cfg);
        let may = std::panic::catch_unwind(|| may_spawn_join(cfg));
        let thread = thread_spawn_join(cfg);
        let yld_ratio = yld.median / coro.median;
        rep.row("local", "cos yield round trip", Unit::Time, yld.median)
            .sample(yld)
            .reference(format!("corosensei resume+suspend {}", fmt_time(coro.median)), yld_ratio)
            .target("<= 3x floor", yld_ratio <= 3.0);
        rep.row("local", "cos yield round trip, ThreadVm set (idle)", Unit::Time, vm_yld.median)
            .sample(vm_yld)
            .reference("cos yield round trip", vm_yld.median / yld.median);
        let spawn_ratio = spawn.median / tokio.median;
        rep.row("local", "cos spawn+run+join trivial task", Unit::Time, spawn.median)
            .sample(spawn)
            .reference(format!("tokio LocalSet spawn_local+await {}", fmt_time(tokio.median)), spawn_ratio)
            .target("<= 1/3 of tokio", spawn_ratio <= 1.0 / 3.0);
        match may {
            Ok(may) => {
                rep.row("local", "may go!+join (1 worker, in a coroutine)", Unit::Time, may.median)
                    .sample(may)
                    .reference("cos spawn+run+join", may.median / spawn.median);
            }
            Err(_) => rep.note("may: the go!+join measurement panicked; its row is left out"),
        }
        rep.row("local", "std::thread spawn+join", Unit::Time, thread.median)
            .sample(thread)
            .reference("cos spawn+run+join", thread.median / spawn.median);
    }

    match memory {
        None => {}
        Some(Memory::PerTask(bytes)) => {
            rep.row("memory", "resident per suspended task (100,000 alive)", Unit::Bytes, bytes)
                .reference("4 KiB page", bytes / 4096.0)
                .target("<= 12 KiB", bytes <= 12.0 * 1024.0);
        }
        Some(Memory::Skipped { created, error }) => rep.note(format!(
            "memory: SKIPPED: only {created} of 100,000 tasks could be spawned ({error}); \
             each stack takes two mappings: raise vm.max_map_count (sysctl -w vm.max_map_count=262144)"
        )),
        Some(Memory::NoProc) => rep.note("memory: SKIPPED: /proc/self/status has no VmRSS here"),
    }

    // Each machine's floor is measured just before the machine, so both see the same load.
    let mut chan_floor = None;
    if opts.wants("thread") || opts.wants("peer") {
        eprintln!("measuring: ThreadVm and its floor");
        let spin = channel_round_trip(cfg, true);
        let block = channel_round_trip(cfg, false);
        rep.row(
            "floor",
            "crossbeam channel ping-pong, 2 threads spinning (try_recv)",
            Unit::Time,
            spin.median,
        )
        .sample(spin);
        rep.row("floor", "crossbeam channel ping-pong, 2 threads blocking (recv)", Unit::Time, block.median)
            .sample(block);
        let (name, rt) = if spin.median <= block.median {
            ("channel ping-pong (spinning)", spin.median)
        } else {
            ("channel ping-pong (blocking)", block.median)
        };
        chan_floor = Some(Floor { name: name.into(), round_trip: rt });
    }
    let needs_plain = opts.wants("thread") || opts.wants("process") || opts.wants("scaling");
    let plain = if needs_plain { busy_plain_threads(&mut rep, cfg) } else { 1.0 };
    if let (true, Some(floor)) = (opts.wants("thread"), &chan_floor) {
        let m = with_thread_vm(2, || {
            let m = machine_rows(&mut rep, cfg, "ThreadVm", libc::RUSAGE_THREAD, floor, 20_000);
            idle_rows(&mut rep, "ThreadVm", libc::RUSAGE_THREAD);
            busy_rows(&mut rep, cfg, "ThreadVm", plain);
            m
        });
        let c = thread_scaling_rows(&mut rep, cfg);
        model_rows(
            &mut rep,
            "ThreadVm",
            &Measured { spawner_per_job: c, workers: most_workers(cfg), ..m },
            true,
        );
    }

    if opts.wants("process") {
        eprintln!("measuring: ProcessVm and its floor");
        match socket_round_trip(cfg, true).and_then(|spin| Ok((spin, socket_round_trip(cfg, false)?))) {
            Ok((spin, block)) => {
                rep.row(
                    "floor",
                    "Unix-socket ping-pong, 2 processes spinning (non-blocking read)",
                    Unit::Time,
                    spin.median,
                )
                .sample(spin);
                rep.row(
                    "floor",
                    "Unix-socket ping-pong, 2 processes blocking (read)",
                    Unit::Time,
                    block.median,
                )
                .sample(block);
                let floor = if spin.median <= block.median {
                    Floor { name: "socket ping-pong (spinning)".into(), round_trip: spin.median }
                } else {
                    Floor { name: "socket ping-pong (blocking)".into(), round_trip: block.median }
                };
                match cos::ProcessVm::builder(registry()).slots_per_host(2).build() {
                    Ok(vm) => {
                        cos::set_vm(vm)?;
                        let m = machine_rows(&mut rep, cfg, "ProcessVm", libc::RUSAGE_SELF, &floor, 5_000);
                        idle_rows(&mut rep, "ProcessVm", libc::RUSAGE_SELF);
                        busy_rows(&mut rep, cfg, "ProcessVm", plain);
                        cos::finalize();
                        model_rows(&mut rep, "ProcessVm", &m, false);
                    }
                    Err(e) => {
                        rep.note(format!("ProcessVm: SKIPPED: the worker processes did not start ({e})"))
                    }
                }
            }
            Err(e) => rep.note(format!("ProcessVm: SKIPPED: the Unix-socket floor did not run ({e})")),
        }
    }
    rep.note(
        "MpiVm: its rows come from a run under mpirun (mpi feature): \
         mpirun --oversubscribe -n 3 <target>/release/examples/bench_report --vm mpi",
    );

    if let (true, Some(floor)) = (opts.wants("peer"), &chan_floor) {
        eprintln!("measuring: rayon");
        rayon_rows(&mut rep, cfg, floor);
        rep.note("the Python peers (ProcessPoolExecutor, mpi4py.futures, PyOPUS, Dask, Ray): bench/peers/run_all.sh");
    }

    if opts.wants("scaling") {
        eprintln!("measuring: scaling (fresh processes)");
        let small = spawn_all_fresh(cfg.reps(11), 1_000, 100);
        let large = spawn_all_fresh(cfg.reps(3), 1_000_000, 1);
        match (small, large) {
            (Ok(small), Ok(large)) => {
                rep.row(
                    "scaling",
                    "spawn N, join-any all: per task, N = 1e3 (fresh process)",
                    Unit::Time,
                    small.median,
                )
                .sample(small);
                let ratio = large.median / small.median;
                rep.row(
                    "scaling",
                    "spawn N, join-any all: per task, N = 1e6 (fresh process)",
                    Unit::Time,
                    large.median,
                )
                .sample(large)
                .reference(format!("N = 1e3 {}", fmt_time(small.median)), ratio)
                .target("<= 1.5x N = 1e3", ratio <= 1.5);
            }
            (Err(e), _) | (_, Err(e)) => rep.note(format!("large N: SKIPPED: a child run failed ({e})")),
        }
        eprintln!("measuring: scaling with the slots (SimVm)");
        let few = sim_per_job(cfg, 16);
        let many = sim_per_job(cfg, 4096);
        rep.row("scaling", "SimVm: per trivial job, every slot kept busy, 16 slots", Unit::Time, few.median)
            .sample(few);
        let ratio = many.median / few.median;
        rep.row(
            "scaling",
            "SimVm: per trivial job, every slot kept busy, 4,096 slots",
            Unit::Time,
            many.median,
        )
        .sample(many)
        .reference(format!("16 slots {}", fmt_time(few.median)), ratio);
    }

    println!("{}", header(&load_start, run_start.elapsed(), "thread and process machines"));
    println!();
    rep.print();
    Ok(())
}

/// The MPI machine's rows, under mpirun: the MPI ping-pong floor, then the same rows as the
/// other machines (round trip, trivial jobs, idle CPU, 1 ms jobs) and the model.
#[cfg(feature = "mpi")]
fn mpi_report(cfg: Cfg) -> Result<(), cos::Error> {
    // `cos::start` has set the MPI machine; the other ranks serve jobs inside it.
    let run_start = Instant::now();
    let load_start = load_average();
    let ranks = cos::slots().unwrap_or(0);
    let mut rep = Report::default();
    if ranks < 3 {
        eprintln!("bench_report: the MPI rows need at least 3 ranks (2 workers); got {ranks}");
        cos::finalize();
        std::process::exit(2);
    }
    eprintln!("measuring: MPI ping-pong floor");
    let ping = mpi_floor::round_trip(cfg)?;
    rep.row("floor", "MPI ping-pong, 2 ranks (blocking send/recv)", Unit::Time, ping.median).sample(ping);
    let floor = Floor { name: "MPI ping-pong".into(), round_trip: ping.median };
    eprintln!("measuring: MpiVm");
    let m = machine_rows(&mut rep, cfg, "MpiVm", libc::RUSAGE_SELF, &floor, 5_000);
    idle_rows(&mut rep, "MpiVm", libc::RUSAGE_SELF);
    let plain = busy_plain_threads(&mut rep, cfg);
    busy_rows(&mut rep, cfg, "MpiVm", plain);
    model_rows(&mut rep, "MpiVm", &m, true);
    cos::finalize();
    println!("{}", header(&load_start, run_start.elapsed(), &format!("MPI machine, {ranks} ranks")));
    println!();
    rep.print();
    Ok(())
}

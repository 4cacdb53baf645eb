//! The performance report: cos next to the hardware floor and its peers, measured side by side
//! in one run, with the project's targets marked PASS or MISS.
//!
//! ```text
//! cargo run --release -p cos-bench --example bench_report
//! ```
//!
//! Every row is the median of several timed batches (11 where the run time allows) and its
//! ratio to a reference measured in the same run. `docs/performance.md` explains the rows,
//! shows a run and what the profiles say about the missed targets.
//!
//! With the `mpi` feature and under `mpirun` (`--vm mpi`), it measures the MPI machine only:
//!
//! ```text
//! cargo build --release -p cos-bench --features mpi --example bench_report
//! mpirun --oversubscribe -n 3 target/release/examples/bench_report --vm mpi
//! ```

use std::cell::{Cell, RefCell};
use std::hint::black_box;
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

fn registry() -> Registry {
    Registry::new().with(&DOUBLE).with(&SPIN).with(&SLEEP)
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
    /// A plain factor.
    Factor,
    /// A share of one core, in percent.
    Percent,
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
                Unit::Factor => format!("{:.2}x", r.value),
                Unit::Percent => format!("{:.2} %", r.value),
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
// Floor

fn corosensei_round_trip() -> Sample {
    use corosensei::{Coroutine, CoroutineResult};
    let mut co = Coroutine::<(), (), (), _>::new(|y, ()| loop {
        y.suspend(());
    });
    measure(11, 2_000_000, |n| {
        for _ in 0..n {
            black_box(matches!(co.resume(()), CoroutineResult::Yield(())));
        }
    })
}

fn channel_round_trip() -> Sample {
    let (to_tx, to_rx) = crossbeam_channel::unbounded::<u64>();
    let (back_tx, back_rx) = crossbeam_channel::unbounded::<u64>();
    let echo = std::thread::spawn(move || {
        for x in to_rx {
            if back_tx.send(x).is_err() {
                break;
            }
        }
    });
    let s = measure(11, 20_000, |n| {
        for i in 0..n {
            to_tx.send(i).expect("echo thread alive");
            black_box(back_rx.recv().expect("echo thread alive"));
        }
    });
    drop(to_tx);
    echo.join().expect("echo thread");
    s
}

fn postcard_job() -> Sample {
    measure(11, 500_000, |n| {
        for i in 0..n {
            let call = RemoteCall::new("double", &black_box(i)).expect("encodes");
            let bytes = postcard::to_stdvec(&call).expect("encodes");
            let back: RemoteCall = postcard::from_bytes(&bytes).expect("decodes");
            let arg: u64 = postcard::from_bytes(&back.args).expect("decodes");
            black_box(arg);
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Local

/// Runs `f` while one other task yields in a loop.
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

fn cos_yield_round_trip() -> Sample {
    with_spinner(|| {
        measure(11, 1_000_000, |n| {
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

fn cos_spawn_join() -> Sample {
    measure(11, 300_000, |n| {
        for i in 0..n {
            let t = cos::spawn(move || black_box(i)).expect("stack");
            black_box(cos::join(t).expect("joins"));
        }
    })
}

fn tokio_spawn_join() -> Sample {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let n = 300_000u64;
        let mut per_op = Vec::new();
        for rep in 0..12 {
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
fn may_spawn_join() -> Sample {
    may::config().set_workers(1);
    let outer = may::go!(move || {
        measure(11, 100_000, |n| {
            for i in 0..n {
                black_box(may::go!(move || black_box(i)).join().expect("joins"));
            }
        })
    });
    outer.join().expect("may coroutine")
}

fn thread_spawn_join() -> Sample {
    measure(11, 2_000, |n| {
        for i in 0..n {
            black_box(std::thread::spawn(move || black_box(i)).join().expect("joins"));
        }
    })
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
// Remote

/// Time per trivial job through `cos::dispatch`, `n` jobs a batch, on the machine that is set.
fn dispatch_trivial(reps: usize, n: u64) -> Sample {
    measure(reps, n, |n| {
        let r = cos::dispatch((0..n).map(|i| cos::job(&DOUBLE, i))).expect("dispatch");
        assert_eq!(r.len() as u64, n);
        black_box(r);
    })
}

/// Time of one job from spawn to joined value, on the machine that is set.
fn remote_latency(reps: usize, n: u64) -> Sample {
    measure(reps, n, |n| {
        for i in 0..n {
            black_box(cos::dispatch_single(cos::job(&DOUBLE, i)).expect("job"));
        }
    })
}

fn rayon_trivial(n: u64) -> Sample {
    use rayon::prelude::*;
    measure(11, n, |n| {
        let v: Vec<u64> = (0..n).into_par_iter().map(|i| DOUBLE.call(black_box(i))).collect();
        black_box(v);
    })
}

fn with_thread_vm<R>(workers: usize, f: impl FnOnce() -> R) -> R {
    let vm = cos::ThreadVm::builder(registry()).slots_per_host(workers).build();
    assert_eq!(cos::set_vm(vm), Ok(true));
    let r = f();
    cos::finalize();
    r
}

// ---------------------------------------------------------------------------------------------
// Scaling

/// Time of `jobs` CPU-bound jobs of `us` microseconds each, dispatched on `workers` threads.
fn spin_batch(workers: usize, jobs: u64, us: u64) -> Sample {
    with_thread_vm(workers, || {
        measure(7, jobs, |n| {
            let r = cos::dispatch((0..n).map(|_| cos::job(&SPIN, us))).expect("dispatch");
            black_box(r);
        })
    })
}

/// The same CPU-bound work on plain threads, `jobs` spins of `us` split over `threads`: what
/// the machine itself gives at this moment.
fn spin_threads(threads: u64, jobs: u64, us: u64) -> Sample {
    measure(7, jobs, |n| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..n / threads {
                        black_box(SPIN.call(us));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("spinning thread");
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

// ---------------------------------------------------------------------------------------------

/// The command line: `--only GROUP[,GROUP...]` keeps some groups of rows; `--profile WHAT`
/// runs one operation many times for a profiler instead of the report.
struct Options {
    only: Option<Vec<String>>,
    profile: Option<String>,
}

impl Options {
    fn parse() -> Options {
        let mut o = Options { only: None, profile: None };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--only" => o.only = args.next().map(|g| g.split(',').map(String::from).collect()),
                "--profile" => o.profile = args.next(),
                _ => {}
            }
        }
        o
    }

    fn wants(&self, group: &str) -> bool {
        self.only.as_ref().is_none_or(|g| g.iter().any(|x| x == group))
    }
}

/// The load average of the last minute, from `/proc/loadavg`.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Runs one operation `n` times, for `valgrind --tool=callgrind`.
fn profile(what: &str, n: u64) {
    match what {
        "yield" => {
            cos_yield_round_trip_n(n);
        }
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
        other => eprintln!("unknown profile {other:?}: floor, yield, vm-yield, spawn, spawn-all or dispatch"),
    }
}

fn main() -> Result<(), cos::Error> {
    // A worker process of the process machine serves jobs here and never returns.
    let machine = cos::start(registry())?;
    #[cfg(feature = "mpi")]
    if machine == cos::Machine::Mpi {
        return mpi_report();
    }
    let _ = machine;
    // The report sets each machine itself; local rows run with none.
    cos::finalize();

    let opts = Options::parse();
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

    // The floor is the reference of most rows: always measured.
    eprintln!("measuring: floor");
    let coro = corosensei_round_trip();
    // The channel round trip depends on whether the other core is free at that moment (a
    // waiting thread then catches the message while it spins, else it sleeps in the kernel):
    // it is measured again just before the remote rows, and the faster of the two is the floor.
    let mut chan = channel_round_trip();
    let post = postcard_job();
    rep.row("floor", "corosensei resume+suspend", Unit::Time, coro.median).sample(coro);
    rep.row("floor", "crossbeam channel round trip (2 threads, best of 2)", Unit::Time, chan.median)
        .sample(chan);
    rep.row("floor", "postcard encode+decode RemoteCall(u64)", Unit::Time, post.median).sample(post);

    if opts.wants("local") {
        eprintln!("measuring: local");
        let yld = cos_yield_round_trip();
        let vm_yld = with_thread_vm(2, cos_yield_round_trip);
        let spawn = cos_spawn_join();
        let tokio = tokio_spawn_join();
        eprintln!("measuring: may");
        let may = std::panic::catch_unwind(may_spawn_join);
        let thread = thread_spawn_join();
        let yld_ratio = yld.median / coro.median;
        rep.row("local", "cos yield round trip", Unit::Time, yld.median)
            .sample(yld)
            .reference("corosensei resume+suspend", yld_ratio)
            .target("<= 2x floor", yld_ratio <= 2.0);
        rep.row("local", "cos yield round trip, ThreadVm set (idle)", Unit::Time, vm_yld.median)
            .sample(vm_yld)
            .reference("cos yield round trip", vm_yld.median / yld.median);
        let spawn_ratio = spawn.median / tokio.median;
        rep.row("local", "cos spawn+run+join trivial task", Unit::Time, spawn.median)
            .sample(spawn)
            .reference("tokio LocalSet spawn_local+await", spawn_ratio)
            .target("<= 1/3 of tokio", spawn_ratio <= 1.0 / 3.0);
        rep.row("local", "tokio LocalSet spawn_local+await", Unit::Time, tokio.median)
            .sample(tokio)
            .reference("cos spawn+run+join", tokio.median / spawn.median);
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

    if opts.wants("remote") {
        eprintln!("measuring: remote (ThreadVm)");
        let again = channel_round_trip();
        if again.median < chan.median {
            chan = again;
            if let Some(r) = rep.rows.iter_mut().find(|r| r.name.starts_with("crossbeam channel round trip"))
            {
                r.value = chan.median;
                r.spread = Some(chan.spread());
            }
        }
        let chan_rate = 1.0 / chan.median;
        let mut best = f64::INFINITY;
        for workers in [1, 2] {
            let s = with_thread_vm(workers, || dispatch_trivial(11, 20_000));
            best = best.min(s.median);
            let rate = 1.0 / s.median;
            let ratio = rate / chan_rate;
            rep.row(
                "remote",
                format!("dispatch trivial jobs, ThreadVm {workers} worker(s)"),
                Unit::Rate,
                s.median,
            )
            .sample(s)
            .reference("channel round trips/s", ratio)
            .target(">= 200 k/s and >= 0.5x channel", rate >= 200_000.0 && ratio >= 0.5);
        }
        let lat = with_thread_vm(1, || remote_latency(11, 5_000));
        rep.row("remote", "one job's round trip, ThreadVm", Unit::Time, lat.median)
            .sample(lat)
            .reference("channel round trip", lat.median / chan.median);

        eprintln!("measuring: remote (ProcessVm)");
        match cos::ProcessVm::builder(registry()).slots_per_host(2).build() {
            Ok(vm) => {
                cos::set_vm(vm)?;
                let s = dispatch_trivial(11, 5_000);
                rep.row("remote", "dispatch trivial jobs, ProcessVm 2 workers", Unit::Rate, s.median)
                    .sample(s)
                    .reference("channel round trips/s", chan.median / s.median);
                let l = remote_latency(11, 1_000);
                rep.row("remote", "one job's round trip, ProcessVm", Unit::Time, l.median)
                    .sample(l)
                    .reference("channel round trip", l.median / chan.median);
                cos::finalize();
            }
            Err(e) => rep.note(format!("ProcessVm: SKIPPED: the worker processes did not start ({e})")),
        }
        rep.note(
            "MpiVm: measured on its own under mpirun (mpi feature): \
             mpirun --oversubscribe -n 3 <target>/release/examples/bench_report --vm mpi",
        );

        eprintln!("measuring: rayon");
        let ray = rayon_trivial(20_000);
        rep.row("remote", "rayon par_iter, same trivial jobs", Unit::Rate, ray.median)
            .sample(ray)
            .reference("best ThreadVm dispatch", best / ray.median);
    }

    if opts.wants("scaling") {
        eprintln!("measuring: scaling");
        let one = spin_batch(1, 100, 1000);
        let two = spin_batch(2, 100, 1000);
        let raw_one = spin_threads(1, 100, 1000);
        let raw_two = spin_threads(2, 100, 1000);
        let speedup = one.median / two.median;
        let raw_speedup = raw_one.median / raw_two.median;
        rep.row("scaling", "dispatch 1 ms CPU jobs, 1 worker (per job)", Unit::Time, one.median).sample(one);
        rep.row("scaling", "dispatch 1 ms CPU jobs, 2 workers (per job)", Unit::Time, two.median)
            .sample(two)
            .reference("1 worker: speedup", speedup)
            .target(">= 1.9x speedup", speedup >= 1.9);
        rep.row("scaling", "plain threads, same 1 ms spins: 2 over 1 speedup", Unit::Factor, raw_speedup);
        let mut base = None;
        for (n, rounds, reps) in [(1_000u64, 100, 11), (10_000, 10, 11), (100_000, 1, 11), (1_000_000, 1, 3)]
        {
            let s = spawn_all_join_all(reps, n, rounds);
            let b = *base.get_or_insert(s.median);
            let row = rep
                .row("scaling", format!("spawn all, then join all: per task, N = {n}"), Unit::Time, s.median)
                .sample(s)
                .reference("N = 1000", s.median / b);
            if n == 1_000_000 {
                row.target("<= 1.5x N = 1000", s.median / b <= 1.5);
            }
        }
    }

    if opts.wants("idle") {
        eprintln!("measuring: idle wait");
        let (share, spawner_share) = with_thread_vm(1, || {
            let (p0, t0, w0) = (cpu_time(libc::RUSAGE_SELF), cpu_time(libc::RUSAGE_THREAD), Instant::now());
            let slept = cos::dispatch_single(cos::job(&SLEEP, 1000)).expect("sleep job");
            let wall = w0.elapsed().as_secs_f64();
            assert_eq!(slept, 1000);
            let process = (cpu_time(libc::RUSAGE_SELF) - p0).as_secs_f64();
            let spawner = (cpu_time(libc::RUSAGE_THREAD) - t0).as_secs_f64();
            (100.0 * process / wall, 100.0 * spawner / wall)
        });
        rep.row("idle", "CPU while waiting 1 s on a remote job (process)", Unit::Percent, share)
            .reference("one core", share / 100.0)
            .target("< 2 % of a core", share < 2.0);
        rep.row(
            "idle",
            "CPU while waiting 1 s on a remote job (spawner thread)",
            Unit::Percent,
            spawner_share,
        )
        .reference("one core", spawner_share / 100.0);
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
    rep.note(format!(
        "{cores} cores; load average (1 min) {} at the start, {} at the end; whole run {:.1} s",
        load(load_start),
        load(load_average()),
        run_start.elapsed().as_secs_f64()
    ));
    rep.print();
    Ok(())
}

/// The MPI machine's rows: jobs per second over the worker ranks and one job's round trip.
#[cfg(feature = "mpi")]
fn mpi_report() -> Result<(), cos::Error> {
    // `cos::start` has set the MPI machine; the other ranks serve jobs inside it.
    let workers = cos::slots().map_or(0, |s| s - 1);
    let mut rep = Report::default();
    let s = dispatch_trivial(11, 5_000);
    rep.row("remote", format!("dispatch trivial jobs, MpiVm {workers} worker rank(s)"), Unit::Rate, s.median)
        .sample(s);
    let l = remote_latency(11, 1_000);
    rep.row("remote", "one job's round trip, MpiVm", Unit::Time, l.median).sample(l);
    cos::finalize();
    rep.print();
    Ok(())
}

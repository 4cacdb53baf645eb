//! Fault injection: many trivial jobs through `cos::dispatch` on worker processes (or worker
//! threads), a seeded share of which fail on purpose in the ways a worker can fail, and a check
//! that every job got exactly one outcome, the one its fault calls for. It prints a table (jobs,
//! faults by kind, lost, duplicated, wrong, the time a slot took to serve again after its worker
//! was lost, jobs/s) and exits non-zero when a job was lost, duplicated or wrong, when a slot
//! did not come back, when a worker process outlived the machine, or when the spawner stopped
//! making progress.
//!
//! The faults (their share is `--fault-rate`, each kind equally likely; the kinds come from a
//! xorshift generator seeded with `--seed`, so a seed names the same jobs every run):
//!
//! | Kind | What the job does | The job's outcome | Machines |
//! |---|---|---|---|
//! | `panic` | panics | `Error::Remote`, kind `Panicked` | thread, process |
//! | `overflow` | recurses without end | `Error::Remote`, kind `StackOverflow`; the worker is replaced | thread, process |
//! | `unencodable` | returns a value whose encoding panics | `Error::WorkerLost`, cause `Panicked`; replaced | thread, process |
//! | `exit` | `std::process::exit(43)` | `Error::WorkerLost`, cause `Exit(43)`; replaced | process |
//! | `abort` | `std::process::abort()` | `Error::WorkerLost`, cause `Signal(SIGABRT)`; replaced | process |
//! | `hang` | sleeps past its `time_limit` | `Error::Timeout`; the worker is killed (a thread: detached) and replaced | thread, process |
//! | `kill` | reports its pid and waits; the spawner sends its worker SIGKILL | `Error::WorkerLost`, cause `Signal(SIGKILL)`; replaced | process |
//! | `stop` | reports its pid and waits; the spawner stops its worker (SIGSTOP), continues it (SIGCONT) `--stop-ms` later and tells the job to go on | its value | process |
//! | `freeze` | as `stop`, but the worker is never continued, past the job's `time_limit` | `Error::Timeout`; the stopped worker is killed and replaced | process |
//! | `garbage` | writes what is not a frame on its worker's socket (a length beyond the limit, or bytes that do not decode) | `Error::WorkerLost`, cause `Connection`; replaced | process |
//! | `stop-idle` | returns its value, and its worker stops itself (SIGSTOP) 5 ms later, idle (only with `--stop-idle`) | its value; the worker's heartbeats stop, so the next job sent to it ends with `Error::WorkerLost`, cause `Silent`, once the silence bound has passed (10 s by default; the checker counts that innocent job as wrong, and with `--retries` it runs again, which the checker's start counts may flag) | process |
//! | `oversized` | returns more bytes than a machine takes (only with `--oversized`) | `Error::Remote` of kind `TooLarge`; the worker serves on | thread, process |
//!
//! Every other job returns a value computed from its index and the seed, checked in the
//! spawner. Every faulty job first sends the spawner a message (its index, slot, pid, start
//! time); a local task of the spawner receives them and signals the `kill`, `stop` and `freeze`
//! workers, each only after checking (by a message to the task, with no scheduler step in
//! between) that the task still runs there, so its worker process is not reaped and its pid
//! not reused.
//!
//! Recovery time: from a worker's loss (the faulty job's start for `overflow`, `unencodable`,
//! `exit`, `abort` and `garbage`; the SIGKILL for `kill`; the job's start plus its time limit for `hang`
//! and `freeze`) to the start, on the same slot, of the next job (on a fresh worker), both on
//! the wall clock of the one host.
//!
//! Run it in release mode:
//! `cargo run --release --example fault_injection -- --vm process` (100,000 jobs, seed 1) or
//! `-- --vm thread`; options: `--jobs N`, `--seed S`, `--fault-rate F` (default 0.01),
//! `--kinds panic,kill,...` (default: every kind the machine has but `oversized`), `--retries N` (dispatch
//! retries of lost and timed-out jobs; each attempt of a faulty job faults again, so its
//! outcome stays the same and the attempts are counted), `--hang-ms` (the time limit of `hang`
//! and `freeze`, default 150), `--stop-ms` (default 20), `--stall-s` (how long without a job's
//! end counts as a hung spawner, default 60), `--time-limit-ms` (a time limit for every job
//! that has none of its own), `--oversized`, `--stop-idle`, `--quick` (CI: 5,000 jobs, 2 %
//! faults). `--slots N` and `--hosts N` size the machine (see `cos::start`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hint::black_box;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cos::{Error, LostCause, Machine, Registry, RemoteErrorKind, RemoteFn, Spawn, TaskId};
use serde::{Deserialize, Serialize, Serializer};

/// In the text of every panic the program causes on purpose (the panic hook keeps them quiet).
const MARK: &str = "fault injection";
/// The exit status of the `exit` fault.
const EXIT_CODE: i32 = 43;
/// How long a `kill`, `stop` or `freeze` job waits to be signalled or told to go on; past it,
/// it returns its value, which is then a wrong outcome (the spawner failed to act).
const WAIT_AT_MOST: Duration = Duration::from_secs(30);
/// The time limit of the `kill` and `stop` jobs: far beyond what they need, so that a
/// spawner that fails to act gives a wrong outcome instead of a hang.
const SAFETY_LIMIT: Duration = Duration::from_secs(40);
/// One more byte than the process machine's frames may hold (`MAX_FRAME`, 256 MiB).
const OVERSIZED: usize = (256 << 20) + 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
enum Kind {
    Plain,
    Panic,
    Overflow,
    Unencodable,
    Exit,
    Abort,
    Hang,
    Kill,
    Stop,
    Freeze,
    Garbage,
    Oversized,
    StopIdle,
}

impl Kind {
    const FAULTS: [Kind; 12] = [
        Kind::Panic,
        Kind::Overflow,
        Kind::Unencodable,
        Kind::Exit,
        Kind::Abort,
        Kind::Hang,
        Kind::Kill,
        Kind::Stop,
        Kind::Freeze,
        Kind::Garbage,
        Kind::Oversized,
        Kind::StopIdle,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "none",
            Kind::Panic => "panic",
            Kind::Overflow => "overflow",
            Kind::Unencodable => "unencodable",
            Kind::Exit => "exit",
            Kind::Abort => "abort",
            Kind::Hang => "hang",
            Kind::Kill => "kill",
            Kind::Stop => "stop",
            Kind::Freeze => "freeze",
            Kind::Garbage => "garbage",
            Kind::Oversized => "oversized",
            Kind::StopIdle => "stop-idle",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::FAULTS.into_iter().find(|k| k.name() == s)
    }

    /// Whether the fault can be had on worker threads (the others end or signal the process).
    fn on_threads(self) -> bool {
        matches!(
            self,
            Kind::Plain | Kind::Panic | Kind::Overflow | Kind::Unencodable | Kind::Hang | Kind::Oversized
        )
    }

    /// Whether the fault costs the slot its worker (so the slot has a recovery time).
    fn replaces_worker(self) -> bool {
        !matches!(self, Kind::Plain | Kind::Panic | Kind::Stop | Kind::StopIdle | Kind::Oversized)
    }

    /// Whether dispatch may run the job again after this fault (its outcome is a lost worker
    /// or a timeout).
    fn retried(self) -> bool {
        self.replaces_worker() && self != Kind::Overflow
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Plain | Kind::Stop | Kind::StopIdle => "its value",
            Kind::Panic => "Remote(Panicked)",
            Kind::Overflow => "Remote(StackOverflow)",
            Kind::Unencodable => "WorkerLost(Panicked)",
            Kind::Exit => "WorkerLost(Exit(43))",
            Kind::Abort => "WorkerLost(Signal(6))",
            Kind::Hang | Kind::Freeze => "Timeout",
            Kind::Kill => "WorkerLost(Signal(9))",
            Kind::Garbage => "WorkerLost(Connection)",
            Kind::Oversized => "Remote(TooLarge)",
        }
    }

    /// Whether `r` is the outcome this fault calls for, for job `index`.
    fn matches(self, r: &Result<Reply, Error>, index: u64, seed: u64) -> bool {
        let lost = |c: &dyn Fn(&LostCause) -> bool| matches!(r, Err(Error::WorkerLost(l)) if c(&l.cause));
        let remote = |k| matches!(r, Err(Error::Remote(e)) if e.kind == k);
        let value = |pad: usize| matches!(r, Ok(v) if v.value == mix(index, seed) && v.pad.len() == pad);
        match self {
            Kind::Plain | Kind::Stop | Kind::StopIdle => value(0),
            Kind::Panic => remote(RemoteErrorKind::Panicked),
            Kind::Overflow => remote(RemoteErrorKind::StackOverflow),
            Kind::Unencodable => lost(&|c| matches!(c, LostCause::Panicked(m) if m.contains(MARK))),
            Kind::Exit => lost(&|c| *c == LostCause::Exit(EXIT_CODE)),
            Kind::Abort => lost(&|c| *c == LostCause::Signal(libc::SIGABRT)),
            Kind::Hang | Kind::Freeze => matches!(r, Err(Error::Timeout)),
            Kind::Kill => lost(&|c| *c == LostCause::Signal(libc::SIGKILL)),
            Kind::Garbage => lost(&|c| matches!(c, LostCause::Connection(_))),
            // Every machine refuses a value over the limit with one typed failure; the worker
            // serves on.
            Kind::Oversized => {
                matches!(r, Err(Error::Remote(e)) if matches!(e.kind, RemoteErrorKind::TooLarge { .. }))
            }
        }
    }
}

/// A job: its identity and the fault it is to have.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    index: u64,
    kind: Kind,
    seed: u64,
    hang_ms: u64,
    /// Whether a job without a fault tells the spawner it started too (so that its retries
    /// are counted: with `--time-limit-ms`).
    announce: bool,
}

/// A job's value, with where and when it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reply {
    value: u64,
    /// The slot (the worker number of its task id).
    slot: u32,
    /// When the job started on its worker (wall clock, ns).
    started_ns: u64,
    /// The `unencodable` fault: encoding this value panics.
    #[serde(serialize_with = "refuse_poison")]
    poison: bool,
    pad: Vec<u8>,
}

fn refuse_poison<S: Serializer>(poison: &bool, s: S) -> Result<S::Ok, S::Error> {
    assert!(!*poison, "{MARK}: a value that cannot be encoded");
    s.serialize_bool(false)
}

/// A faulty job's first act: it tells the spawner who and where it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Started {
    index: u64,
    kind: Kind,
    slot: u32,
    pid: u32,
    at_ns: u64,
}

/// The spawner's messages to a waiting job.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Cmd {
    /// Only asks whether the task still runs (the send fails when it does not).
    Ping,
    /// Go on and return the value.
    Go,
}

static FAULTY: RemoteFn<Order, Reply> = RemoteFn::new("faulty", run_order);

fn mix(index: u64, seed: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 31)
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn recurse(n: u64) -> u64 {
    let pad = black_box([n; 64]);
    if n == u64::MAX {
        return 0;
    }
    black_box(recurse(n + 1)) + pad[3]
}

/// The job, on its worker.
fn run_order(o: Order) -> Reply {
    let started_ns = wall_ns();
    let slot = cos::remote_task().map_or(0, |t| t.task.worker);
    let reply =
        |pad: Vec<u8>, poison: bool| Reply { value: mix(o.index, o.seed), slot, started_ns, poison, pad };
    if o.kind == Kind::Plain && !o.announce {
        return reply(Vec::new(), false);
    }
    let started = Started { index: o.index, kind: o.kind, slot, pid: std::process::id(), at_ns: started_ns };
    if let Err(e) = cos::send_message(TaskId::SPAWNER, &started) {
        // The spawner counts the start as missing; the fault still happens.
        eprintln!("job {}: cannot tell the spawner it started: {e}", o.index);
    }
    match o.kind {
        Kind::Plain => reply(Vec::new(), false),
        Kind::Panic => panic!("{MARK}: job {} panics", o.index),
        Kind::Overflow => {
            black_box(recurse(0));
            reply(Vec::new(), false)
        }
        Kind::Unencodable => reply(Vec::new(), true),
        Kind::Exit => std::process::exit(EXIT_CODE),
        Kind::Abort => std::process::abort(),
        Kind::Hang => {
            // Past the time limit; a detached worker thread returns some time later.
            std::thread::sleep(Duration::from_millis(o.hang_ms.saturating_mul(5)));
            reply(Vec::new(), false)
        }
        Kind::Kill | Kind::Stop | Kind::Freeze => {
            let until = Instant::now() + WAIT_AT_MOST;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                match cos::receive_message::<Cmd>(Some(left)) {
                    Ok(Some((_, Cmd::Ping))) if !left.is_zero() => continue,
                    _ => break,
                }
            }
            reply(Vec::new(), false)
        }
        Kind::Garbage => {
            write_garbage(o.index);
            // The spawner drops the connection and kills this worker; a value that still
            // comes back would be a wrong outcome.
            std::thread::sleep(WAIT_AT_MOST);
            reply(Vec::new(), false)
        }
        Kind::Oversized => reply(vec![7; OVERSIZED], false),
        Kind::StopIdle => {
            // The worker stops itself once the value is on its way: idle, with its
            // connection open.
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(5));
                // SAFETY: kill(2) takes two integers and touches no memory; the signal goes
                // to this very process.
                unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
            });
            reply(Vec::new(), false)
        }
    }
}

/// The `garbage` fault: writes what is not a frame onto the worker's own connection to the
/// spawner, between its frames: a length beyond the frame limit (even `index`), or a frame
/// whose bytes do not decode as a worker's frame (odd).
fn write_garbage(index: u64) {
    let socket = std::fs::read_dir("/proc/self/fd").ok().and_then(|fds| {
        fds.filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            target.to_str()?.starts_with("socket:").then_some(fd)
        })
        .min()
    });
    let Some(fd) = socket else {
        eprintln!("job {index}: no socket to write garbage on");
        return;
    };
    let bytes: Vec<u8> = if index % 2 == 0 {
        u32::MAX.to_le_bytes().to_vec()
    } else {
        let mut b = 8u32.to_le_bytes().to_vec();
        b.extend_from_slice(&[0xff; 8]);
        b
    };
    // SAFETY: write(2) reads `bytes.len()` bytes at `bytes.as_ptr()`, a buffer that lives
    // across the call; `fd` is an open socket descriptor of this process (listed in
    // /proc/self/fd just before; nothing closes descriptors meanwhile).
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n != bytes.len() as isize {
        eprintln!("job {index}: garbage not written whole: {}", std::io::Error::last_os_error());
    }
}

/// What the spawner's signalling task saw and did.
#[derive(Default)]
struct Book {
    /// Every faulty attempt's start, in the order the messages came.
    started: Vec<Started>,
    /// When the `kill` attempt of a job index was killed (wall clock, ns), per attempt.
    killed_at: HashMap<u64, Vec<u64>>,
    signals: BTreeMap<&'static str, u64>,
    /// What went wrong in the spawner's own acting (a task that ended before it was signalled).
    anomalies: Vec<String>,
}

/// Whether remote task `task` still runs: a message to it is refused once it ended. Nothing
/// else runs between this check and the signal the caller then sends (no system call), so a
/// task that runs still has its worker process, unreaped: its pid is not reused.
fn still_runs(task: TaskId) -> bool {
    cos::send_message(task, &Cmd::Ping).is_ok()
}

fn signal(book: &mut Book, pid: u32, sig: libc::c_int, name: &'static str) {
    let pid = pid as libc::pid_t;
    assert!(pid > 1 && pid != std::process::id() as libc::pid_t, "not a worker's pid: {pid}");
    // SAFETY: kill(2) takes two integers and touches no memory of this process; `pid` is a
    // worker process this program started and has not reaped (its task still runs, checked
    // just before by `still_runs`), so the signal reaches that worker and no other process.
    let r = unsafe { libc::kill(pid, sig) };
    if r == 0 {
        *book.signals.entry(name).or_insert(0) += 1;
    } else {
        book.anomalies.push(format!("{name} to process {pid}: {}", std::io::Error::last_os_error()));
    }
}

/// The spawner's signalling task: takes the faulty jobs' messages, signals the `kill`, `stop`
/// and `freeze` workers, continues the stopped ones, until `done` and no message is left.
fn signaller(book: Rc<RefCell<Book>>, done: Rc<Cell<bool>>, stop_for: Duration) {
    const TICK: Duration = Duration::from_millis(20);
    let mut stopped: VecDeque<(Instant, TaskId, u32, u64)> = VecDeque::new();
    loop {
        let now = Instant::now();
        while stopped.front().is_some_and(|s| s.0 <= now) {
            let (_, task, pid, index) = stopped.pop_front().expect("checked");
            let mut b = book.borrow_mut();
            if still_runs(task) {
                signal(&mut b, pid, libc::SIGCONT, "SIGCONT");
                if let Err(e) = cos::send_message(task, &Cmd::Go) {
                    b.anomalies.push(format!("job {index}: cannot tell it to go on: {e}"));
                }
            } else {
                b.anomalies.push(format!("job {index}: ended while its worker was stopped"));
            }
        }
        let wait = stopped.front().map_or(TICK, |s| s.0.saturating_duration_since(now).min(TICK));
        match cos::receive_message::<Started>(Some(wait)) {
            Ok(Some((task, s))) => {
                let mut b = book.borrow_mut();
                match s.kind {
                    Kind::Kill => {
                        if still_runs(task) {
                            signal(&mut b, s.pid, libc::SIGKILL, "SIGKILL");
                            b.killed_at.entry(s.index).or_default().push(wall_ns());
                        } else {
                            b.anomalies.push(format!("job {}: ended before it could be killed", s.index));
                        }
                    }
                    Kind::Stop | Kind::Freeze => {
                        if still_runs(task) {
                            signal(&mut b, s.pid, libc::SIGSTOP, "SIGSTOP");
                            if s.kind == Kind::Stop {
                                stopped.push_back((Instant::now() + stop_for, task, s.pid, s.index));
                            }
                        } else if s.kind == Kind::Stop {
                            b.anomalies.push(format!("job {}: ended before it could be stopped", s.index));
                        }
                        // A `freeze` job that timed out before its message was read is not
                        // stopped; its outcome (a timeout) is the same.
                    }
                    _ => {}
                }
                b.started.push(s);
            }
            Ok(None) => {
                if done.get() && stopped.is_empty() {
                    return;
                }
            }
            Err(e) => book.borrow_mut().anomalies.push(format!("receive: {e}")),
        }
    }
}

/// xorshift64*: the fault plan's generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(mix(seed, 0x5EED) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Options {
    jobs: u64,
    seed: u64,
    rate: f64,
    kinds: Vec<Kind>,
    retries: u32,
    hang: Duration,
    stop_for: Duration,
    stall: Duration,
    /// A time limit for every job that has none of its own.
    job_limit: Option<Duration>,
}

fn usage(why: &str) -> ! {
    eprintln!("fault_injection: {why}");
    eprintln!(
        "usage: fault_injection [--vm thread|process] [--slots N] [--hosts N] [--jobs N] [--seed S] \
         [--fault-rate F] [--kinds k1,k2,..] [--retries N] [--hang-ms MS] [--stop-ms MS] [--stall-s S] [--time-limit-ms MS] \
         [--oversized] [--stop-idle] [--quick]"
    );
    std::process::exit(2)
}

fn options(process: bool) -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Options {
        jobs: if quick { 5_000 } else { 100_000 },
        seed: 1,
        rate: if quick { 0.02 } else { 0.01 },
        kinds: Vec::new(),
        retries: 0,
        hang: Duration::from_millis(150),
        stop_for: Duration::from_millis(20),
        stall: Duration::from_secs(60),
        job_limit: None,
    };
    let mut oversized = false;
    let mut stop_idle = false;
    let mut named: Option<Vec<Kind>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        let number =
            |v: String| v.parse::<u64>().unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")));
        match flag {
            "--quick" => {}
            "--oversized" => oversized = true,
            "--stop-idle" => stop_idle = true,
            // Read by cos::start.
            "--vm" | "--slots" | "--hosts" => {
                value();
            }
            "--jobs" => o.jobs = number(value()),
            "--seed" => o.seed = number(value()),
            "--retries" => {
                o.retries = u32::try_from(number(value())).unwrap_or_else(|_| usage("--retries: too many"))
            }
            "--hang-ms" => o.hang = Duration::from_millis(number(value())),
            "--stop-ms" => o.stop_for = Duration::from_millis(number(value())),
            "--stall-s" => o.stall = Duration::from_secs(number(value())),
            "--time-limit-ms" => o.job_limit = Some(Duration::from_millis(number(value()))),
            "--fault-rate" => {
                let v = value();
                o.rate = v
                    .parse()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .unwrap_or_else(|| usage(&format!("--fault-rate: not in 0..=1: {v}")));
            }
            "--kinds" => {
                let v = value();
                named = Some(
                    v.split(',')
                        .map(|k| Kind::parse(k).unwrap_or_else(|| usage(&format!("unknown kind {k:?}"))))
                        .collect(),
                );
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    o.kinds = match named {
        Some(kinds) => kinds,
        None => Kind::FAULTS
            .into_iter()
            .filter(|k| match k {
                Kind::Oversized => oversized,
                Kind::StopIdle => stop_idle,
                _ => true,
            })
            .collect(),
    };
    if !process {
        let (keep, drop): (Vec<Kind>, Vec<Kind>) = o.kinds.iter().partition(|k| k.on_threads());
        if !drop.is_empty() {
            let names: Vec<&str> = drop.iter().map(|k| k.name()).collect();
            println!(
                "worker threads: left out {} (each needs a worker process of its own)",
                names.join(", ")
            );
        }
        o.kinds = keep;
    }
    if o.kinds.is_empty() && o.rate > 0.0 {
        usage("no fault kind left for this machine");
    }
    o
}

/// The fault of every job, from the seed.
fn plan(o: &Options) -> Vec<Kind> {
    let mut rng = Rng::new(o.seed);
    let threshold = (o.rate * (1u64 << 53) as f64) as u64;
    (0..o.jobs)
        .map(|_| {
            let faulty = (rng.next() >> 11) < threshold;
            let pick = rng.next();
            if faulty {
                o.kinds[(pick % o.kinds.len() as u64) as usize]
            } else {
                Kind::Plain
            }
        })
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Processes whose parent is this one (zombies included).
fn children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces, so read after its last ')'.
        let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == me).then_some(pid)
    })
    .collect()
}

/// The median and the largest of `v` (sorted here), in ms.
fn median_max(v: &mut [u64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some((v[v.len() / 2] as f64 / 1e6, v[v.len() - 1] as f64 / 1e6))
}

#[derive(Default)]
struct Tally {
    jobs: u64,
    matched: u64,
    wrong: u64,
    attempts: u64,
    recovery: Vec<u64>,
}

fn main() {
    // The workers run this too: quiet the deliberate panics, and no core files for the aborts.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text =
            payload.downcast_ref::<String>().map(String::as_str).or(payload.downcast_ref::<&str>().copied());
        if !text.is_some_and(|t| t.contains(MARK)) {
            default_hook(info);
        }
    }));
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit(2) reads the one struct passed, which lives across the call, and
    // changes only this process's limits (which the workers inherit).
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    }
    let machine = match cos::start(Registry::new().with(&FAULTY)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("fault_injection: cannot start the machine: {e}");
            std::process::exit(2);
        }
    };
    let process = match machine {
        Machine::Process => true,
        Machine::Thread => false,
        other => {
            usage(&format!("the {other} machine cannot replace a lost worker; use --vm thread or process"))
        }
    };
    let o = options(process);
    let kinds = plan(&o);
    let slots = cos::slots().unwrap_or(1);
    let hosts = cos::hosts().len();
    println!(
        "fault injection on the {machine} machine: {hosts} host(s), {} worker slots; {} jobs, seed {}, fault rate {}, retries {}",
        slots - 1,
        o.jobs,
        o.seed,
        o.rate,
        o.retries
    );
    println!("command: {}", std::env::args().collect::<Vec<_>>().join(" "));
    let load_before = load_average();

    // A spawner that stops making progress is a finding: say so and end the run.
    let progress = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    {
        let (progress, finished, stall) = (Arc::clone(&progress), Arc::clone(&finished), o.stall);
        std::thread::spawn(move || {
            let (mut seen, mut since) = (u64::MAX, Instant::now());
            while !finished.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                let now = progress.load(Ordering::SeqCst);
                if now != seen {
                    (seen, since) = (now, Instant::now());
                } else if since.elapsed() >= stall {
                    eprintln!("HUNG: no job ended for {} s ({now} jobs ended)", stall.as_secs());
                    std::process::exit(3);
                }
            }
        });
    }

    let book = Rc::new(RefCell::new(Book::default()));
    let done = Rc::new(Cell::new(false));
    let signalling = {
        let (book, done, stop_for) = (Rc::clone(&book), Rc::clone(&done), o.stop_for);
        cos::spawn(move || signaller(book, done, stop_for)).expect("the signalling task")
    };

    let mut outcomes = vec![0u8; o.jobs as usize];
    let mut tally: BTreeMap<Kind, Tally> = BTreeMap::new();
    let mut wrong: Vec<String> = Vec::new();
    // Every job start per slot (ns), for the recovery times.
    let mut starts: HashMap<u32, Vec<u64>> = HashMap::new();
    // The slot a faulty job's error names.
    let mut error_slot: HashMap<u64, u32> = HashMap::new();
    // The lowest and highest task id of a job's last attempt: every attempt takes the next tid
    // (nothing else spawns while the dispatch runs), so they count the attempts.
    let (mut low_tid, mut high_tid) = (u64::MAX, 0u64);
    let seed = o.seed;
    let hang_ms = o.hang.as_millis() as u64;
    let job_limit = o.job_limit;
    let jobs = kinds.iter().enumerate().map(|(i, &kind)| {
        let job = Spawn::new(
            &FAULTY,
            Order { index: i as u64, kind, seed, hang_ms, announce: job_limit.is_some() },
        );
        match kind {
            Kind::Hang | Kind::Freeze => job.time_limit(Duration::from_millis(hang_ms)),
            Kind::Kill | Kind::Stop => job.time_limit(SAFETY_LIMIT),
            _ => match job_limit {
                Some(limit) => job.time_limit(limit),
                None => job,
            },
        }
    });
    let t0 = Instant::now();
    let run = cos::Dispatch::new(jobs)
        .retries(o.retries)
        .collector(|c| {
            progress.fetch_add(1, Ordering::SeqCst);
            if c.tid.0 != 0 {
                (low_tid, high_tid) = (low_tid.min(c.tid.0), high_tid.max(c.tid.0));
            }
            let i = c.index as u64;
            let kind = kinds[c.index];
            outcomes[c.index] = outcomes[c.index].saturating_add(1);
            let t = tally.entry(kind).or_default();
            if kind.matches(c.result, i, seed) {
                t.matched += 1;
            } else {
                t.wrong += 1;
                if wrong.len() < 20 {
                    wrong.push(format!(
                        "job {i} ({}): expected {}, got {:?}",
                        kind.name(),
                        kind.expected(),
                        c.result.as_ref().map(|r| r.value)
                    ));
                }
            }
            match c.result {
                Ok(r) => starts.entry(r.slot).or_default().push(r.started_ns),
                Err(Error::Remote(e)) => {
                    if let Some(task) = e.task {
                        error_slot.insert(i, task.worker);
                    }
                }
                Err(Error::WorkerLost(l)) => {
                    if let Some(task) = l.task {
                        error_slot.insert(i, task.worker);
                    }
                }
                Err(_) => {}
            }
            ControlFlow::Continue(())
        })
        .run();
    let elapsed = t0.elapsed();
    let load_after = load_average();
    done.set(true);
    let mut failed = Vec::new();
    if let Err(e) = run {
        failed.push(format!("dispatch failed: {e}"));
    }
    if let Err(e) = cos::join(signalling) {
        failed.push(format!("the signalling task failed: {e}"));
    }
    finished.store(true, Ordering::SeqCst);
    let in_service = cos::free_slots() == Some(slots - 1);
    if !in_service {
        failed.push(format!("{:?} of {} worker slots serve after the run", cos::free_slots(), slots - 1));
    }
    if cos::task_count() != 1 || cos::finished_tasks() != 0 {
        failed.push(format!(
            "tasks left: {} (finished, unjoined: {})",
            cos::task_count(),
            cos::finished_tasks()
        ));
    }
    cos::finalize();
    let left = children();
    if !left.is_empty() {
        failed.push(format!("worker processes left after finalize: {left:?}"));
    }

    // Attempts, the slot each error names, and the recovery times.
    let book = book.borrow();
    let mut attempts: HashMap<u64, Vec<&Started>> = HashMap::new();
    for s in &book.started {
        attempts.entry(s.index).or_default().push(s);
        starts.entry(s.slot).or_default().push(s.at_ns);
    }
    for v in starts.values_mut() {
        v.sort_unstable();
    }
    let mut ran_twice = 0u64;
    let mut no_start = 0u64;
    let mut no_next_job = 0u64;
    for (i, &kind) in kinds.iter().enumerate() {
        let t = tally.entry(kind).or_default();
        t.jobs += 1;
        if kind == Kind::Plain && o.job_limit.is_none() {
            continue;
        }
        let i = i as u64;
        let tried = attempts.get(&i).map_or(&[][..], Vec::as_slice);
        t.attempts += tried.len() as u64;
        // With a time limit on every job, any job can time out on a worker stopped by an
        // earlier `stop-idle` (before or after it started) and be retried.
        let allowed = if kind.retried() || o.job_limit.is_some() { o.retries as usize + 1 } else { 1 };
        if tried.len() > allowed {
            ran_twice += 1;
            wrong.push(format!(
                "job {i} ({}): started {} times, at most {allowed} allowed",
                kind.name(),
                tried.len()
            ));
        } else if tried.len() < allowed && o.job_limit.is_none() && !matches!(kind, Kind::Hang | Kind::Freeze)
        {
            // Every attempt of a faulty job faults again and is retried while it may be. (A
            // time limit may pass before the job reaches its worker, for example one still
            // starting: then that attempt never started, and its timeout is still right.)
            no_start += 1;
            wrong.push(format!("job {i} ({}): {} starts seen, {allowed} expected", kind.name(), tried.len()));
        }
        if let (Some(&named), Some(last)) = (error_slot.get(&i), tried.last()) {
            if named != last.slot {
                t.wrong += 1;
                wrong.push(format!(
                    "job {i} ({}): its error names slot {named}, it ran on {}",
                    kind.name(),
                    last.slot
                ));
            }
        }
        if !kind.replaces_worker() {
            continue;
        }
        let kills = book.killed_at.get(&i);
        for (n, s) in tried.iter().enumerate() {
            let lost_at = match kind {
                Kind::Kill => match kills.and_then(|k| k.get(n)) {
                    Some(&at) => at,
                    None => continue,
                },
                Kind::Hang | Kind::Freeze => s.at_ns + o.hang.as_nanos() as u64,
                _ => s.at_ns,
            };
            let on_slot = starts.get(&s.slot).map_or(&[][..], Vec::as_slice);
            let next = on_slot.partition_point(|&at| at <= lost_at);
            match on_slot.get(next) {
                Some(&at) => t.recovery.push(at - lost_at),
                None => no_next_job += 1,
            }
        }
    }
    let lost = outcomes.iter().filter(|&&n| n == 0).count() as u64;
    let duplicated = outcomes.iter().filter(|&&n| n > 1).count() as u64 + ran_twice;
    let wrong_total: u64 = tally.values().map(|t| t.wrong).sum::<u64>() + no_start;

    println!();
    println!("| Kind | Jobs | Expected outcome | Got it | Wrong | Starts | Recovery median (ms) | Recovery max (ms) |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    let mut all_recovery = Vec::new();
    for (kind, t) in &mut tally {
        all_recovery.extend_from_slice(&t.recovery);
        let (med, max) = match median_max(&mut t.recovery) {
            Some((m, x)) => (format!("{m:.1}"), format!("{x:.1}")),
            None => ("-".into(), "-".into()),
        };
        let starts = if *kind == Kind::Plain && o.job_limit.is_none() {
            "-".to_string()
        } else {
            t.attempts.to_string()
        };
        println!(
            "| {} | {} | {} | {} | {} | {starts} | {med} | {max} |",
            kind.name(),
            t.jobs,
            kind.expected(),
            t.matched,
            t.wrong
        );
    }
    let faults: u64 = tally.iter().filter(|(k, _)| **k != Kind::Plain).map(|(_, t)| t.jobs).sum();
    let spawns = if high_tid >= low_tid { high_tid - low_tid + 1 } else { 0 };
    let retried = spawns.saturating_sub(o.jobs);
    if o.retries == 0 && spawns != o.jobs {
        failed.push(format!("{spawns} task ids for {} jobs without retries", o.jobs));
    }
    println!();
    println!(
        "jobs {}, faults {faults}, outcomes {}, lost {lost}, duplicated {duplicated}, wrong {wrong_total}, attempts {spawns} (retries {retried})",
        o.jobs,
        outcomes.iter().map(|&n| u64::from(n)).sum::<u64>()
    );
    let signals: Vec<String> = book.signals.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "signals sent by the spawner: {}",
        if signals.is_empty() { "none".into() } else { signals.join(", ") }
    );
    match median_max(&mut all_recovery) {
        Some((m, x)) => println!(
            "recovery (worker lost -> its slot starts the next job): {} samples, median {m:.1} ms, max {x:.1} ms{}",
            all_recovery.len(),
            if no_next_job > 0 { format!(" ({no_next_job} losses with no later job on their slot)") } else { String::new() }
        ),
        None => println!("recovery: no worker was lost"),
    }
    println!(
        "time {:.2} s, {:.0} jobs/s; load average {load_before} before, {load_after} after",
        elapsed.as_secs_f64(),
        o.jobs as f64 / elapsed.as_secs_f64()
    );
    for a in &book.anomalies {
        println!("spawner: {a}");
    }
    for w in &wrong {
        println!("WRONG: {w}");
    }
    for f in &failed {
        println!("FAILED: {f}");
    }
    if lost > 0 || duplicated > 0 || wrong_total > 0 || !book.anomalies.is_empty() || !failed.is_empty() {
        println!("fault injection FAILED");
        std::process::exit(1);
    }
    println!("fault injection passed: every job got exactly one outcome, the one its fault calls for");
}

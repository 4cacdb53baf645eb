//! Checks the MPI machine on a real MPI job. Build and run it with
//!
//! ```text
//! cargo build --release --features mpi --example mpi_check
//! mpirun --oversubscribe -n 4 target/release/examples/mpi_check
//! ```
//!
//! Rank 0 dispatches jobs over the other ranks, targets its own host and every other host, runs a
//! task that panics on its worker, and waits for a slow task while measuring its own CPU time;
//! when `PARALLEL_MIRRORED_STORAGE` is set, it writes a file under its first entry and has a task
//! on every host read it through the file's `cos::AbstractPath`. A job past its time limit and a
//! cancelled job, each waiting on a 30 s simulator, end at once and their rank serves again soon.
//! A job sends a message of its own to rank 0 on `MPI_COMM_WORLD` with a tag the machine does
//! not use, and the spawner receives it after the join. Then it finalizes the machine while a
//! task still runs and another never returns, which ends the workers within the finalize grace.
//! It prints `mpi: N passed, M failed` and exits non-zero when a check failed.
//!
//! Options: `--lose-rank` runs only the check of a rank that dies while busy (a run of its own
//! with OpenMPI's recovery on: `mpirun --mca orte_enable_recovery 1 --mca
//! orte_abort_on_non_zero_status 0 -n 4 ... --lose-rank`); `--expect-hosts N` fails unless the
//! ranks are on N hosts; `--expect-path-translation`
//! fails unless some host reaches the mirrored file through a path other than the spawner's
//! (both for `cluster/two-hosts.sh`, where the hosts mount the share at different paths).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use cos::VirtualMachine;

static DOUBLE: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("double", |x| 2 * x);
static WHERE: cos::RemoteFn<(), String> =
    cos::RemoteFn::new("where", |()| mpi::environment::processor_name().unwrap_or_default());
/// A tag of the program's own (the machine's are 11 to 19).
const OWN_TAG: mpi::Tag = 4242;

/// On the worker: sends `x` to rank 0 with the program's own tag on `MPI_COMM_WORLD` before
/// the job's result goes.
static OWN_MESSAGE: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("own_message", |x| {
    use mpi::point_to_point::Destination;
    use mpi::topology::Communicator;
    mpi::topology::SimpleCommunicator::world().process_at_rank(0).send_with_tag(&x, OWN_TAG);
    x
});

/// A job's own MPI traffic on `MPI_COMM_WORLD` with a tag of its own is not taken by the
/// machine: the message, sent before the job's result (MPI keeps the order between two
/// ranks), is still there for the spawner's own receive after the join.
fn check_own_messages() -> Result<(), String> {
    use mpi::point_to_point::Source;
    use mpi::topology::Communicator;
    let world = mpi::topology::SimpleCommunicator::world();
    for x in [7u64, 8, 9] {
        let task = cos::spawn_remote(&OWN_MESSAGE, x).map_err(|e| e.to_string())?;
        if cos::join(task).map_err(|e| e.to_string())? != x {
            return Err("wrong result".into());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = loop {
            if let Some(m) = world.any_process().immediate_matched_probe_with_tag(OWN_TAG) {
                break m.0.matched_receive::<u64>().0;
            }
            if Instant::now() > deadline {
                return Err(format!("the job's message {x} (tag {OWN_TAG}) was taken by the machine"));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if got != x {
            return Err(format!("the job's message was {got}, not {x}"));
        }
    }
    Ok(())
}

/// On the worker: the host, the path on this host of `path` and the contents of that file.
fn read_mirrored(path: cos::AbstractPath) -> Result<(String, String, String), String> {
    let host = mpi::environment::processor_name().unwrap_or_default();
    let actual = cos::to_actual_path(&path).map_err(|e| format!("on {host}: {e}"))?;
    let text = std::fs::read_to_string(&actual)
        .map_err(|e| format!("on {host}: cannot read {}: {e}", actual.display()))?;
    Ok((host, actual.display().to_string(), text))
}
type Mirrored = Result<(String, String, String), String>;
static READ_MIRRORED: cos::RemoteFn<cos::AbstractPath, Mirrored> =
    cos::RemoteFn::new("read_mirrored", read_mirrored);
/// The spawner's view of "double" with another result type: never registered.
static DOUBLE_AS_I64: cos::RemoteFn<u64, i64> = cos::RemoteFn::new("double", |x| 2 * x as i64);
static FAIL: cos::RemoteFn<u32, u32> = cos::RemoteFn::new("fail", |x| panic!("job {x} fails on purpose"));
/// Recurses without end.
fn runaway(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    if n == u64::MAX {
        return 0;
    }
    std::hint::black_box(runaway(n + 1)) + pad[1]
}
static RUNAWAY: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("runaway", runaway);
static SLEEP: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("sleep_ms", |ms| {
    std::thread::sleep(Duration::from_millis(ms));
    ms
});

/// Starts `sleep SECONDS` as a simulator in a process group and waits for it; its end as text
/// (a cancelled job's simulator is ended, so the wait returns with `Killed`).
fn simulate(seconds: u32) -> String {
    match cos::ProcessGroup::start(std::process::Command::new("sleep").arg(seconds.to_string())) {
        Ok(mut g) => format!("{:?}", g.wait(None).map_err(|e| e.kind)),
        Err(e) => format!("not started: {e}"),
    }
}
static SIMULATE: cos::RemoteFn<u32, String> = cos::RemoteFn::new("simulate", simulate);
/// A job that never returns and never yields (a thread sleep, not a cooperative wait).
static HANG: cos::RemoteFn<(), ()> = cos::RemoteFn::new("hang", |()| loop {
    std::thread::sleep(Duration::from_secs(3600));
});
/// Ends its rank at once, as a crash would (no MPI_Finalize).
static DIE: cos::RemoteFn<i32, ()> = cos::RemoteFn::new("die", |code| {
    // SAFETY: _exit(2) ends the process at once; nothing runs after it.
    unsafe { libc_exit(code) }
});
extern "C" {
    #[link_name = "_exit"]
    fn libc_exit(code: i32) -> !;
}

/// After a job on `rank` ended early (cancelled or timed out while its simulator would run for
/// 30 s), the rank runs a job again within 1.5 s: its simulator was ended, the job returned,
/// and its late report was dropped. Every other rank is kept busy meanwhile, so the last spawn
/// can only go to `rank`.
fn rank_comes_back(rank: Option<u32>) -> Result<(), String> {
    let t0 = Instant::now();
    let free = cos::free_slots().unwrap_or(0);
    let mut busy = Vec::new();
    for _ in 0..free {
        let s =
            cos::Spawn::new(&SLEEP, 2000).block(false).enqueue(false).start().map_err(|e| e.to_string())?;
        busy.push(s);
    }
    // Blocks until a slot is free: the rank of the ended job, or one of the 2 s sleepers.
    let back = cos::Spawn::new(&DOUBLE, 21).start().map_err(|e| e.to_string())?;
    let waited = t0.elapsed();
    let on = back.task_id.map(|t| t.worker);
    let v = cos::join(back.task).map_err(|e| e.to_string())?;
    for s in busy {
        cos::join(s.task).map_err(|e| e.to_string())?;
    }
    if v != 42 || on != rank || waited > Duration::from_millis(1500) {
        return Err(format!(
            "the next job ran on rank {on:?} (expected {rank:?}) after {waited:?}, gave {v}"
        ));
    }
    println!("       rank {rank:?} took a job again {} ms after the end", waited.as_millis());
    Ok(())
}

/// A job past its time limit ends with `Timeout` at the deadline (its simulator is ended on
/// the rank); the rank serves again soon after.
fn check_time_limit() -> Result<(), String> {
    let t0 = Instant::now();
    let s = cos::Spawn::new(&SIMULATE, 30)
        .time_limit(Duration::from_millis(200))
        .start()
        .map_err(|e| e.to_string())?;
    let rank = s.task_id.map(|t| t.worker);
    let joined = cos::join(s.task);
    let took = t0.elapsed();
    match joined {
        Err(cos::Error::Timeout) if took < Duration::from_secs(1) => {}
        other => return Err(format!("a job past its 200 ms limit joined as {other:?} after {took:?}")),
    }
    rank_comes_back(rank)
}

/// A cancelled job waiting on its simulator joins as `Cancelled`; the rank's simulator is
/// ended, so the rank serves again soon after; the late result is given to no one.
fn check_cancel() -> Result<(), String> {
    let s = cos::Spawn::new(&SIMULATE, 30).start().map_err(|e| e.to_string())?;
    let rank = s.task_id.map(|t| t.worker);
    let tid = s.task.tid();
    // Let the job start its simulator (the wait is not an ordering the check relies on: a
    // cancel before the simulator starts ends the job as well).
    std::thread::sleep(Duration::from_millis(100));
    match cos::cancel(tid) {
        Ok(true) => {}
        other => return Err(format!("cancel gave {other:?}")),
    }
    match cos::join(s.task) {
        Err(cos::Error::Cancelled(t)) if t == tid => {}
        other => return Err(format!("the cancelled job joined as {other:?}")),
    }
    rank_comes_back(rank)
}

/// With `--lose-rank` (a run of its own, under `mpirun --mca orte_enable_recovery 1 --mca
/// orte_abort_on_non_zero_status 0`): a job ends its rank as a crash would; the spawner hears
/// nothing from the busy rank past the 1 s silence limit and the job joins as
/// `WorkerLost` with `LostCause::Silent`; the rank is out of service and the others serve on.
fn check_lost_rank() -> Result<(), String> {
    let free = cos::free_slots().unwrap_or(0);
    let t0 = Instant::now();
    let s = cos::Spawn::new(&DIE, 3).start().map_err(|e| e.to_string())?;
    let rank = s.task_id.map(|t| t.worker);
    let joined = cos::join(s.task);
    let took = t0.elapsed();
    match joined {
        Err(cos::Error::WorkerLost(lost))
            if matches!(lost.cause, cos::LostCause::Silent(_)) && lost.task.map(|t| t.worker) == rank => {}
        other => return Err(format!("a job whose rank died joined as {other:?} after {took:?}")),
    }
    println!("       rank {rank:?} reported lost after {} ms", took.as_millis());
    if cos::free_slots() != Some(free - 1) {
        return Err(format!("{:?} free slots after rank {rank:?} died (before: {free})", cos::free_slots()));
    }
    let results = cos::dispatch((0..20).map(|i| cos::job(&DOUBLE, i))).map_err(|e| e.to_string())?;
    if results != (0..20).map(|i| Ok(2 * i)).collect::<Vec<_>>() {
        return Err(format!("jobs after the lost rank gave {results:?}"));
    }
    Ok(())
}

/// With `--lose-rank`: a spawner that does not look at the machine for longer than the 1 s
/// silence limit (a long computation of its own) finds the busy rank's heartbeats waiting and
/// loses no rank.
fn check_busy_spawner() -> Result<(), String> {
    let s = cos::Spawn::new(&SLEEP, 1500).start().map_err(|e| e.to_string())?;
    // The spawner's own work: no system call, so the scheduler does not poll the machine.
    std::thread::sleep(Duration::from_secs(2));
    match cos::join(s.task) {
        Ok(1500) => Ok(()),
        other => {
            Err(format!("a job outliving the silence limit while the spawner was busy joined as {other:?}"))
        }
    }
}

/// A check: `Err` says what went wrong.
type Check<'a> = &'a dyn Fn() -> Result<(), String>;

/// This process's user and system CPU time, in clock ticks of 10 ms (`/proc/self/stat`).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command name: state is field 3, utime field 14, stime field 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// This thread's time on a CPU, in nanoseconds (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// 100 jobs over the workers give what the same function gives here.
fn check_dispatch() -> Result<(), String> {
    let results = cos::dispatch((0..100).map(|i| cos::job(&DOUBLE, i))).map_err(|e| e.to_string())?;
    let results: Vec<u64> = results.into_iter().collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let expected: Vec<u64> = (0..100).map(|i| DOUBLE.call(i)).collect();
    if results != expected {
        return Err(format!("results {results:?}"));
    }
    Ok(())
}

/// Slots are the world's ranks, the spawner's own never free; the hosts include this one.
fn check_slots(size: usize, here: &cos::HostId) -> Result<(), String> {
    let (slots, free) = (cos::slots(), cos::free_slots());
    if slots != Some(size) || free != Some(size - 1) {
        return Err(format!("slots {slots:?}, free slots {free:?} in a world of {size}"));
    }
    let hosts = cos::hosts();
    if !hosts.contains(here) || hosts.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("hosts {hosts:?} (this host: {here})"));
    }
    Ok(())
}

/// A task aimed at this host runs there; a host that does not exist has no free slot.
fn check_targeting(here: &cos::HostId) -> Result<(), String> {
    let s = cos::Spawn::new(&WHERE, ()).host(here.clone()).start().map_err(|e| e.to_string())?;
    if s.host.as_ref() != Some(here) {
        return Err(format!("spawned on {:?}, not on {here}", s.host));
    }
    let ran_on = cos::join(s.task).map_err(|e| e.to_string())?;
    if ran_on != here.name() {
        return Err(format!("ran on {ran_on:?}, not on {here}"));
    }
    let nowhere = cos::HostId::new("no-such-host.invalid");
    match cos::Spawn::new(&WHERE, ()).host(nowhere).block(false).enqueue(false).start() {
        Err(cos::Error::NoFreeSlot) => Ok(()),
        other => Err(format!("spawn on a missing host gave {:?}", other.map(|s| s.host))),
    }
}

/// Starts `f(args)` on `host` without waiting for a slot; `Ok(None)` when the host has no free
/// slot and is this host (the spawner's own rank is never free).
fn start_on<A, R>(
    f: &'static cos::RemoteFn<A, R>,
    args: A,
    host: &cos::HostId,
    here: &cos::HostId,
) -> Result<Option<cos::Spawned<R>>, String>
where
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: serde::de::DeserializeOwned + 'static,
{
    match cos::Spawn::new(f, args).host(host.clone()).block(false).enqueue(false).start() {
        Ok(s) if s.host.as_ref() == Some(host) => Ok(Some(s)),
        Ok(s) => Err(format!("a task for {host} was spawned on {:?}", s.host)),
        Err(cos::Error::NoFreeSlot) if host == here => Ok(None),
        Err(e) => Err(format!("spawn on {host}: {e}")),
    }
}

/// A task sent to each host with `Spawn::host` runs there; with `--expect-hosts N` there are N.
fn check_every_host(here: &cos::HostId, expected: Option<usize>) -> Result<(), String> {
    let hosts = cos::hosts();
    let names: Vec<&str> = hosts.iter().map(|h| h.name()).collect();
    println!("hosts: {}", names.join(", "));
    if let Some(n) = expected {
        if hosts.len() != n {
            return Err(format!("{} hosts ({}), expected {n}", hosts.len(), names.join(", ")));
        }
    }
    for host in &hosts {
        let Some(s) = start_on(&WHERE, (), host, here)? else {
            println!("       {host}: only the spawner's rank, no worker");
            continue;
        };
        let ran_on = cos::join(s.task).map_err(|e| e.to_string())?;
        println!("       task sent to {host} ran on {ran_on}");
        if ran_on != host.name() {
            return Err(format!("the task sent to {host} ran on {ran_on:?}"));
        }
    }
    Ok(())
}

/// A file written under the first mirrored storage entry here, sent as an abstract path, is read
/// by a task on every host, each through its own host's entry.
fn check_mirrored_paths(here: &cos::HostId, expect_translation: bool) -> Result<(), String> {
    let root = cos::mirrored_storage().into_iter().next().ok_or("no mirrored storage entry")?;
    let dir = root.join(format!("mpi_check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = read_everywhere(&dir, here, expect_translation);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn read_everywhere(
    dir: &std::path::Path,
    here: &cos::HostId,
    expect_translation: bool,
) -> Result<(), String> {
    let file = dir.join("probe.txt");
    let nonce = format!("written by {here}, process {}, at {:?}", std::process::id(), Instant::now());
    std::fs::write(&file, &nonce).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let abstract_path = cos::to_abstract_path(&file)
        .map_err(|e| format!("{} is not on the mirrored share: {e}", file.display()))?;
    if abstract_path.index != Some(0) {
        return Err(format!("{} became {abstract_path:?}, not a path under entry 0", file.display()));
    }
    println!("       {} on {here} is {abstract_path:?}", file.display());
    let mut translated = 0;
    for host in cos::hosts() {
        let Some(s) = start_on(&READ_MIRRORED, abstract_path.clone(), &host, here)? else { continue };
        let (ran_on, actual, text) = cos::join(s.task).map_err(|e| e.to_string())??;
        println!("       {ran_on} reads it as {actual}");
        if ran_on != host.name() || text != nonce {
            return Err(format!("the task for {host} ran on {ran_on} and read {text:?}"));
        }
        if std::path::Path::new(&actual) != file {
            translated += 1;
        }
    }
    if expect_translation && translated == 0 {
        return Err("every host reached the file through the spawner's own path".into());
    }
    Ok(())
}

/// A panicking task fails at its join; its rank and every other one then run jobs again.
fn check_failure() -> Result<(), String> {
    let failing = cos::Spawn::new(&FAIL, 7).start().map_err(|e| e.to_string())?;
    let rank = failing.task_id.map(|t| t.worker);
    match cos::join(failing.task) {
        Err(cos::Error::Remote(e))
            if e.kind == cos::RemoteErrorKind::Panicked && e.message.contains("job 7 fails on purpose") => {}
        other => return Err(format!("failing task joined as {other:?}")),
    }
    // With every slot free, one job per free slot reaches every worker rank.
    let free = cos::free_slots().unwrap_or(0);
    let mut started = Vec::new();
    for i in 0..free as u64 {
        let s = cos::Spawn::new(&DOUBLE, i).block(false).enqueue(false).start().map_err(|e| e.to_string())?;
        started.push((i, s));
    }
    if !started.iter().any(|(_, s)| s.task_id.map(|t| t.worker) == rank) {
        return Err(format!("rank {rank:?} got no job after its task failed"));
    }
    for (i, s) in started {
        let v = cos::join(s.task).map_err(|e| e.to_string())?;
        if v != 2 * i {
            return Err(format!("job {i} gave {v}"));
        }
    }
    Ok(())
}

/// A job whose function the workers registered with other types fails with
/// `SignatureMismatch` naming it, instead of giving a wrong value; the ranks serve on.
fn check_signature() -> Result<(), String> {
    match cos::dispatch_single(cos::job(&DOUBLE_AS_I64, 3)) {
        Err(cos::Error::Remote(e))
            if e.kind == cos::RemoteErrorKind::SignatureMismatch && e.message == "double" => {}
        other => return Err(format!("a call with other types joined as {other:?}")),
    }
    match cos::dispatch_single(cos::job(&DOUBLE, 3)) {
        Ok(6) => Ok(()),
        other => Err(format!("the registered types then gave {other:?}")),
    }
}

/// A runaway recursion in a job ends that job with an error; the MPI job lives on, and the rank,
/// which cannot be replaced, goes out of service (its slot no longer counts as free), so that no
/// later job inherits what the abandoned frames held.
fn check_overflow() -> Result<(), String> {
    let free = cos::free_slots().unwrap_or(0);
    let s = cos::Spawn::new(&RUNAWAY, 0).start().map_err(|e| e.to_string())?;
    let rank = s.task_id.map(|t| t.worker);
    match cos::join(s.task) {
        Err(cos::Error::Remote(e))
            if e.kind == cos::RemoteErrorKind::StackOverflow && e.task.map(|t| t.worker) == rank => {}
        other => return Err(format!("runaway task joined as {other:?}")),
    }
    if cos::free_slots() != Some(free - 1) {
        return Err(format!(
            "{:?} free slots after rank {rank:?} overflowed (before: {free})",
            cos::free_slots()
        ));
    }
    let results = cos::dispatch((0..20).map(|i| cos::job(&DOUBLE, i))).map_err(|e| e.to_string())?;
    if results != (0..20).map(|i| Ok(2 * i)).collect::<Vec<_>>() {
        return Err(format!("jobs after the overflow gave {results:?}"));
    }
    Ok(())
}

/// Waiting for a slow worker leaves the spawner's CPU (nearly) idle: it does not spin.
fn check_idle_wait() -> Result<(), String> {
    let task = cos::spawn_remote(&SLEEP, 1000).map_err(|e| e.to_string())?;
    let (t0, ticks0, ns0) = (Instant::now(), cpu_ticks(), thread_cpu_ns());
    let slept = cos::join(task).map_err(|e| e.to_string())?;
    let wall = t0.elapsed().as_secs_f64();
    let (ticks1, ns1) = (cpu_ticks(), thread_cpu_ns());
    let process = ticks0.zip(ticks1).map(|(a, b)| (b - a) as f64 * 0.01 / wall * 100.0);
    let thread = ns0.zip(ns1).map(|(a, b)| (b - a) as f64 * 1e-9 / wall * 100.0);
    println!(
        "spawner CPU while waiting {wall:.2} s for a worker: process {}, main thread {}",
        process.map_or("n/a".into(), |p| format!("{p:.2}%")),
        thread.map_or("n/a".into(), |p| format!("{p:.2}%")),
    );
    if slept != 1000 {
        return Err(format!("the slow task gave {slept}"));
    }
    // Spinning would show as a whole core; the limit only tells spinning from waiting.
    match thread.or(process) {
        Some(p) if p > 50.0 => Err(format!("the spawner spins while it waits ({p:.1}% of a core)")),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    // The failing-task check panics on a worker on purpose: one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    let registry = cos::Registry::new()
        .with(&DOUBLE)
        .with(&WHERE)
        .with(&FAIL)
        .with(&SLEEP)
        .with(&RUNAWAY)
        .with(&READ_MIRRORED)
        .with(&SIMULATE)
        .with(&HANG)
        .with(&DIE)
        .with(&OWN_MESSAGE);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let expect_hosts = match args.iter().position(|a| a == "--expect-hosts") {
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Some(n),
            None => {
                eprintln!("mpi_check: --expect-hosts needs a number");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let expect_translation = args.iter().any(|a| a == "--expect-path-translation");
    // Only rank 0 comes back; the other ranks work until the machine is finalized.
    let lose_rank = args.iter().any(|a| a == "--lose-rank");
    let mut vm = cos::MpiVm::builder(registry).finalize_grace(Duration::from_millis(500));
    if lose_rank {
        vm = vm.heartbeat(Duration::from_millis(100), Duration::from_secs(1));
    }
    let vm = match vm.init() {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("mpi_check: {e}");
            println!("mpi: 0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let size = vm.slots();
    let here = vm.host_id(None).unwrap_or_else(|| cos::HostId::new("?"));
    println!("MPI machine: {size} ranks, this host {here}");
    if size < 2 {
        eprintln!("mpi_check: needs at least 2 ranks (run it with mpirun -n 4)");
        println!("mpi: 0 passed, 1 failed");
        return ExitCode::FAILURE;
    }
    if cos::set_vm(vm) != Ok(true) {
        println!("mpi: 0 passed, 1 failed");
        return ExitCode::FAILURE;
    }

    let (slots, targeting) = (|| check_slots(size, &here), || check_targeting(&here));
    let every_host = || check_every_host(&here, expect_hosts);
    let mirrored = || check_mirrored_paths(&here, expect_translation);
    let mut checks: Vec<(&str, Check)> = if lose_rank {
        vec![
            ("a spawner busy past the silence limit", &check_busy_spawner),
            ("a rank that dies while busy", &check_lost_rank),
        ]
    } else {
        vec![
            ("slots and hosts", &slots),
            ("dispatch of 100 jobs", &check_dispatch),
            ("host targeting", &targeting),
            ("a task on every host", &every_host),
            ("failing task", &check_failure),
            ("signature mismatch", &check_signature),
            ("stack overflow in a job", &check_overflow),
            ("idle wait", &check_idle_wait),
            ("time limit on a job", &check_time_limit),
            ("cancel of a job waiting on its simulator", &check_cancel),
            ("a job's own MPI messages on other tags", &check_own_messages),
        ]
    };
    if !lose_rank {
        if cos::mirrored_storage().is_empty() {
            println!("skip   mirrored paths (PARALLEL_MIRRORED_STORAGE is not set)");
        } else {
            checks.insert(4, ("mirrored paths across hosts", &mirrored));
        }
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        match check() {
            Ok(()) => {
                passed += 1;
                println!("ok     {name}");
            }
            Err(e) => {
                failed += 1;
                println!("FAILED {name}: {e}");
            }
        }
    }
    // Finalize waits for a task that still runs (it ends within the grace), and does not wait
    // past the 500 ms grace for one that never returns: that rank leaves its job and exits, so
    // mpirun ends (it returns 0 only when all ranks exit with 0).
    let running = cos::Spawn::new(&SLEEP, 200).block(false).enqueue(false).start();
    let hung = cos::Spawn::new(&HANG, ()).block(false).enqueue(false).start();
    match (running, hung) {
        (Ok(s), Ok(h)) if s.task_id.is_some() && h.task_id.is_some() => {
            let t0 = Instant::now();
            cos::finalize();
            let took = t0.elapsed();
            println!("       finalize took {} ms", took.as_millis());
            if took < Duration::from_secs(3) {
                passed += 1;
                println!("ok     finalize with a running task and a hung one");
            } else {
                failed += 1;
                println!("FAILED finalize with a running task and a hung one: it took {took:?}");
            }
        }
        (s, h) => {
            cos::finalize();
            failed += 1;
            println!(
                "FAILED finalize with a running task and a hung one: the tasks did not start ({:?}, {:?})",
                s.map(|s| s.task_id),
                h.map(|s| s.task_id)
            );
        }
    }
    println!("mpi: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! The process machine: jobs run in worker processes that are this test program started again.
//!
//! Runs without the test harness (`harness = false`): `main` first calls `cos::start`, which
//! turns a started copy into a worker, then runs the checks and prints "N passed, M failed".

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::remote_failure;
use cos::{Error, HostId, LostCause, ProcessVm, Registry, RemoteErrorKind, RemoteFn, Spawn};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value whose encoding panics when it is [`POISON`]: the panic happens after the function
/// returned, outside the registry's catching, and so escapes into the worker loop.
#[derive(Debug, PartialEq)]
struct Out(u64);

const POISON: u64 = u64::MAX;

impl Serialize for Out {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != POISON, "this value cannot be serialized");
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Out {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Out)
    }
}

/// Ends this process with a signal sent from outside, as `kill` would.
fn killed_by(signal: &str) -> ! {
    let pid = std::process::id().to_string();
    let _ = Command::new("sh").args(["-c", &format!("kill -{signal} {pid}")]).status();
    loop {
        std::thread::park();
    }
}

static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);
static SUM_SQUARES: RemoteFn<Vec<u64>, u64> = RemoteFn::new("sum_squares", |v| v.iter().map(|x| x * x).sum());
static PID: RemoteFn<(), u32> = RemoteFn::new("pid", |()| std::process::id());
static LOCAL_TASKS: RemoteFn<u64, u64> = RemoteFn::new("local_tasks", |n| {
    let tasks: Vec<_> = (0..n).map(|i| cos::spawn(move || i * i).unwrap()).collect();
    tasks.into_iter().map(|t| cos::join(t).unwrap()).sum()
});
static PANICS: RemoteFn<(), u64> = RemoteFn::new("panics", |()| panic!("inside the function"));
static ABORTS: RemoteFn<(), u64> = RemoteFn::new("aborts", |()| std::process::abort());
static EXITS: RemoteFn<(), u64> = RemoteFn::new("exits", |()| std::process::exit(3));
static KILLED: RemoteFn<(), u64> = RemoteFn::new("killed", |()| killed_by("KILL"));
static TERMINATED: RemoteFn<(), u64> = RemoteFn::new("terminated", |()| killed_by("TERM"));
static ESCAPES: RemoteFn<(), Out> = RemoteFn::new("escapes", |()| Out(POISON));
static CRASHY: RemoteFn<u64, Out> = RemoteFn::new("crashy", |i| match i {
    3 => std::process::abort(),
    7 => std::process::exit(3),
    11 => Out(POISON),
    15 => killed_by("KILL"),
    _ => Out(2 * i),
});
static NESTED_MACHINE: RemoteFn<(), bool> =
    RemoteFn::new("nested_machine", |()| matches!(ProcessVm::new(Registry::new()), Err(Error::Vm(_))));
static NEVER_ENDS: RemoteFn<(), u64> = RemoteFn::new("never_ends", |()| loop {
    std::thread::park();
});
static UNREGISTERED: RemoteFn<(), ()> = RemoteFn::new("unregistered", |()| ());

/// Recurses without end.
fn runaway(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    if n == u64::MAX {
        return 0;
    }
    std::hint::black_box(runaway(n + 1)) + pad[1]
}
static RUNAWAY: RemoteFn<u64, u64> = RemoteFn::new("runaway", runaway);

/// A lock of the worker process.
static LOCK: Mutex<u64> = Mutex::new(0);
/// Overflows while it holds `LOCK`.
static RUNAWAY_LOCKED: RemoteFn<u64, u64> = RemoteFn::new("runaway_locked", |n| {
    let mut held = LOCK.lock().unwrap();
    *held += 1;
    runaway(n) + *held
});
/// Whether `LOCK` is free in the worker process that runs this job.
static LOCK_IS_FREE: RemoteFn<(), bool> = RemoteFn::new("lock_is_free", |()| LOCK.try_lock().is_ok());

fn registry() -> Registry {
    Registry::new()
        .with(&DOUBLE)
        .with(&SUM_SQUARES)
        .with(&PID)
        .with(&LOCAL_TASKS)
        .with(&PANICS)
        .with(&ABORTS)
        .with(&EXITS)
        .with(&KILLED)
        .with(&TERMINATED)
        .with(&ESCAPES)
        .with(&CRASHY)
        .with(&NESTED_MACHINE)
        .with(&NEVER_ENDS)
        .with(&RUNAWAY)
        .with(&RUNAWAY_LOCKED)
        .with(&LOCK_IS_FREE)
}

fn machine(hosts: usize, per_host: usize) -> ProcessVm {
    ProcessVm::builder(registry()).hosts(hosts).slots_per_host(per_host).build().unwrap()
}

fn pid_of_worker() -> u32 {
    cos::dispatch_single(cos::job(&PID, ())).unwrap()
}

fn results_equal_local_calls() {
    assert!(cos::set_vm(machine(1, 2)).unwrap());
    let doubled = cos::dispatch((0..200).map(|i| cos::job(&DOUBLE, i))).unwrap();
    assert_eq!(doubled, (0..200).map(|i| Ok(DOUBLE.call(i))).collect::<Vec<_>>());
    // Large arguments: frames of several hundred kilobytes.
    let vectors: Vec<Vec<u64>> = (0..6).map(|k| (0..50_000 * k).collect()).collect();
    let sums = cos::dispatch(vectors.iter().map(|v| cos::job(&SUM_SQUARES, v.clone()))).unwrap();
    assert_eq!(sums, vectors.into_iter().map(|v| Ok(SUM_SQUARES.call(v))).collect::<Vec<_>>());
    let squares = cos::dispatch((0..10).map(|n| cos::job(&LOCAL_TASKS, n))).unwrap();
    assert_eq!(squares, (0..10).map(|n| Ok(LOCAL_TASKS.call(n))).collect::<Vec<_>>());
}

fn jobs_run_in_other_processes() {
    assert!(cos::set_vm(machine(1, 2)).unwrap());
    assert_eq!(cos::slots(), Some(3));
    assert_eq!(cos::free_slots(), Some(2));
    let pids = cos::dispatch((0..4).map(|_| cos::job(&PID, ()))).unwrap();
    for p in pids {
        assert_ne!(p.unwrap(), std::process::id());
    }
}

fn hosts_are_targeted() {
    let vm = machine(2, 1);
    assert!(cos::set_vm(vm).unwrap());
    let (h0, h1) = (HostId::new("host0"), HostId::new("host1"));
    assert_eq!(cos::hosts(), vec![h0.clone(), h1.clone()]);
    let on1 = Spawn::new(&PID, ()).host(h1.clone()).start().unwrap();
    let on0 = Spawn::new(&PID, ()).host(h0.clone()).start().unwrap();
    assert_eq!(on1.host, Some(h1.clone()));
    assert_eq!(on1.task_id.map(|t| t.worker), Some(2));
    assert_eq!(on0.host, Some(h0));
    assert_eq!(on0.task_id.map(|t| t.worker), Some(1));
    let id1 = on1.task_id.unwrap();
    assert_eq!(cos::with_vm(|vm| vm.host_id(Some(id1))), Some(Some(h1.clone())));
    let (p1, p0) = (cos::join(on1.task).unwrap(), cos::join(on0.task).unwrap());
    assert_ne!(p1, p0);
    // The same host again: the same worker process.
    let again = Spawn::new(&PID, ()).host(h1).start().unwrap();
    assert_eq!(cos::join(again.task).unwrap(), p1);
}

fn a_caught_panic_keeps_the_worker() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    let before = pid_of_worker();
    match cos::dispatch_single(cos::job(&PANICS, ())) {
        Err(Error::Remote(e)) => {
            assert_eq!(e.kind, RemoteErrorKind::Panicked);
            assert!(e.message.contains("inside the function"), "{e:?}");
        }
        other => panic!("expected a remote failure, got {other:?}"),
    }
    assert_eq!(pid_of_worker(), before);
}

fn a_stack_overflow_retires_the_worker() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    let before = pid_of_worker();
    let r = cos::dispatch_single(cos::job(&RUNAWAY, 0));
    assert_eq!(remote_failure(&r).map(|f| f.0), Some(RemoteErrorKind::StackOverflow), "{r:?}");
    // The overflowed frames were abandoned with whatever they held: a new process takes over.
    assert_eq!(cos::free_slots(), Some(1));
    assert_ne!(pid_of_worker(), before, "a new worker process");
}

fn a_job_after_an_overflow_does_not_inherit_a_held_lock() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    assert_eq!(cos::dispatch_single(cos::job(&LOCK_IS_FREE, ())), Ok(true));
    let r = cos::dispatch_single(cos::job(&RUNAWAY_LOCKED, 0));
    assert_eq!(remote_failure(&r).map(|f| f.0), Some(RemoteErrorKind::StackOverflow), "{r:?}");
    assert_eq!(cos::dispatch_single(cos::job(&LOCK_IS_FREE, ())), Ok(true));
}

fn an_unknown_function_is_an_error() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    let r = cos::dispatch_single(cos::job(&UNREGISTERED, ()));
    assert_eq!(remote_failure(&r), Some((RemoteErrorKind::UnknownFunction, "unregistered")), "{r:?}");
    assert_eq!(pid_of_worker(), pid_of_worker());
}

/// Checks that `r` is a lost worker on the machine's only host, for this cause.
fn expect_lost<R: std::fmt::Debug>(r: Result<R, Error>, cause: impl Fn(&LostCause) -> bool) {
    match r {
        Err(Error::WorkerLost(lost)) => {
            assert!(cause(&lost.cause), "{lost:?}: another cause");
            assert_eq!(lost.host, Some(HostId::new("host0")));
            assert_eq!(lost.task.map(|t| t.worker), Some(1));
        }
        other => panic!("expected a lost worker, got {other:?}"),
    }
}

fn every_death_loses_only_its_task_and_restarts_the_slot() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    let mut pid = pid_of_worker();
    let next = |pid: &mut u32| {
        assert_eq!(cos::free_slots(), Some(1), "the slot has a worker again");
        let now = pid_of_worker();
        assert_ne!(now, *pid, "a new worker process");
        *pid = now;
    };
    expect_lost(cos::dispatch_single(cos::job(&ABORTS, ())), |c| *c == LostCause::Signal(libc::SIGABRT));
    next(&mut pid);
    expect_lost(cos::dispatch_single(cos::job(&EXITS, ())), |c| *c == LostCause::Exit(3));
    next(&mut pid);
    expect_lost(cos::dispatch_single(cos::job(&KILLED, ())), |c| *c == LostCause::Signal(libc::SIGKILL));
    next(&mut pid);
    expect_lost(cos::dispatch_single(cos::job(&TERMINATED, ())), |c| *c == LostCause::Signal(libc::SIGTERM));
    next(&mut pid);
    expect_lost(
        cos::dispatch_single(cos::job(&ESCAPES, ())),
        |c| matches!(c, LostCause::Panicked(m) if m.contains("this value cannot be serialized")),
    );
    next(&mut pid);
    assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, 21)), Ok(42));
}

fn no_job_is_lost_when_workers_die() {
    assert!(cos::set_vm(machine(1, 2)).unwrap());
    let results = cos::dispatch((0..20).map(|i| cos::job(&CRASHY, i))).unwrap();
    assert_eq!(results.len(), 20);
    for (i, r) in results.into_iter().enumerate() {
        match i {
            3 | 7 | 11 | 15 => assert!(matches!(r, Err(Error::WorkerLost(_))), "job {i}: {r:?}"),
            _ => assert_eq!(r, Ok(Out(2 * i as u64)), "job {i}"),
        }
    }
    assert_eq!(cos::free_slots(), Some(2));
    let again = cos::dispatch((0..10).map(|i| cos::job(&DOUBLE, i))).unwrap();
    assert_eq!(again, (0..10).map(|i| Ok(2 * i)).collect::<Vec<_>>());
}

fn a_cancelled_task_s_worker_is_replaced() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    let before = pid_of_worker();
    let task = cos::spawn_remote(&NEVER_ENDS, ()).unwrap();
    assert_eq!(cos::cancel(task.tid()), Ok(true));
    assert_eq!(cos::join(task), Err(Error::Cancelled(task.tid())));
    assert_eq!(cos::free_slots(), Some(1));
    let after = pid_of_worker();
    assert_ne!(after, before);
    assert!(!std::path::Path::new(&format!("/proc/{before}")).exists(), "the old worker still runs");
}

fn a_time_limit_stops_a_remote_task() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    let limited = Spawn::new(&NEVER_ENDS, ()).time_limit(Duration::from_millis(100)).start().unwrap();
    assert_eq!(cos::join(limited.task), Err(Error::Timeout));
    assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, 4)), Ok(8));
}

fn finalize_ends_every_worker() {
    assert!(cos::set_vm(machine(2, 1)).unwrap());
    let pid_on = |h: &str| cos::dispatch_single(Spawn::new(&PID, ()).host(HostId::new(h))).unwrap();
    let pids = [pid_on("host0"), pid_on("host1")];
    assert_ne!(pids[0], pids[1]);
    for p in &pids {
        assert!(std::path::Path::new(&format!("/proc/{p}")).exists());
    }
    cos::finalize();
    for p in &pids {
        assert!(!std::path::Path::new(&format!("/proc/{p}")).exists(), "worker {p} still runs");
    }
}

/// Set by a check for the workers started after it: such a worker waits while the file it
/// names exists before it starts, as a worker that is slow to start would.
const HOLD_ENV: &str = "COS_TEST_HOLD_START";

/// Set by a check for the workers started after it: such a worker exits with status 7 before
/// it connects, as a worker that cannot start would.
const FAIL_START_ENV: &str = "COS_TEST_FAIL_START";

fn hold_while_asked() {
    if let Some(path) = std::env::var_os(HOLD_ENV) {
        while std::path::Path::new(&path).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if std::env::var_os(FAIL_START_ENV).is_some() {
        std::process::exit(7);
    }
}

fn a_worker_that_cannot_restart_loses_its_job_and_its_slot() {
    assert!(cos::set_vm(machine(1, 2)).unwrap());
    std::env::set_var(FAIL_START_ENV, "1");
    // The first worker dies; its slot gets a process that will exit before it connects.
    let first = cos::dispatch_single(cos::job(&KILLED, ()));
    std::env::remove_var(FAIL_START_ENV);
    expect_lost(first, |c| *c == LostCause::Signal(libc::SIGKILL));
    // The lowest free slot is the restarting one: the job waits there, and is lost when the
    // new process exits before it connects; the slot is down while its restart is backed off.
    let waiting = Spawn::new(&PID, ()).start().unwrap();
    assert_eq!(waiting.task_id.map(|t| t.worker), Some(1));
    let r = cos::join(waiting.task);
    assert!(matches!(&r, Err(Error::WorkerLost(l)) if matches!(l.cause, LostCause::Start(_))), "{r:?}");
    assert_eq!(cos::free_slots(), Some(1), "one slot is left");
    assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, 4)), Ok(8));
}

/// With every slot out of service, a remote spawn waits for a slot; it never runs in the
/// spawner. The only slot is down while its worker's start is backed off: the blocking spawn
/// waits for it to come back (before the back-off, the slot was out of service for good and the
/// spawn a deadlock) and runs in the new worker.
fn with_every_slot_down_a_spawn_never_runs_in_the_spawner() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    std::env::set_var(FAIL_START_ENV, "1");
    expect_lost(cos::dispatch_single(cos::job(&KILLED, ())), |c| *c == LostCause::Signal(libc::SIGKILL));
    let waiting = Spawn::new(&PID, ()).start().unwrap();
    let r = cos::join(waiting.task);
    assert!(matches!(&r, Err(Error::WorkerLost(l)) if matches!(l.cause, LostCause::Start(_))), "{r:?}");
    assert_eq!(cos::free_slots(), Some(0), "the only slot is down");
    std::env::remove_var(FAIL_START_ENV);
    let s = Spawn::new(&PID, ()).start().expect("the spawn waits for the slot to come back");
    assert!(s.task_id.is_some(), "it runs remotely");
    let pid = cos::join(s.task).unwrap();
    assert_ne!(pid, std::process::id(), "not run in the spawner");
}

fn a_restarting_worker_does_not_block_the_spawner() {
    let vm = ProcessVm::builder(registry()).slots_per_host(1).connect_timeout(Duration::from_secs(5)).build();
    assert!(cos::set_vm(vm.unwrap()).unwrap());
    let before = pid_of_worker();
    let hold = std::env::temp_dir().join(format!("cos-hold-start-{}", std::process::id()));
    std::fs::write(&hold, b"").unwrap();
    std::env::set_var(HOLD_ENV, &hold);
    expect_lost(cos::dispatch_single(cos::job(&KILLED, ())), |c| *c == LostCause::Signal(libc::SIGKILL));
    // The new worker cannot connect until the file is gone; the spawner goes on meanwhile.
    assert_eq!(cos::free_slots(), Some(1), "the restarting slot takes a job");
    let local = cos::spawn(|| 6 * 7).unwrap();
    assert_eq!(cos::join(local), Ok(42));
    let job = cos::spawn_remote(&PID, ()).unwrap();
    assert_eq!(cos::try_join(job), Ok(None), "the job waits for its worker");
    std::fs::remove_file(&hold).unwrap();
    std::env::remove_var(HOLD_ENV);
    let pid = cos::join(job).unwrap();
    assert_ne!(pid, before, "a new worker process");
    assert_ne!(pid, std::process::id(), "not run in the spawner");
}

fn a_free_slot_loop_sees_every_end() {
    let mut vm = common::On::Process.machine(registry(), 1, 2);
    common::a_free_slot_loop_sees_every_end(vm.as_mut(), &cos::RemoteCall::new("double", &21u64).unwrap());
}

fn a_worker_cannot_start_workers() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    assert_eq!(cos::dispatch_single(cos::job(&NESTED_MACHINE, ())), Ok(true));
}

fn no_core_dumps() {
    let limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limits (which
    // the workers inherit): the deliberate aborts and signals must leave no core files.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &limit);
    }
}

/// A value not sent back is never encoded: the worker that would break encoding it serves on.
fn a_value_not_sent_back_is_not_encoded() {
    assert!(cos::set_vm(machine(1, 1)).unwrap());
    let before = pid_of_worker();
    let s: cos::Spawned<()> = Spawn::new(&ESCAPES, ()).no_send_back().start().unwrap();
    assert!(s.task_id.is_some(), "it ran remotely");
    assert_eq!(cos::join(s.task), Ok(()));
    assert_eq!(pid_of_worker(), before);
}

fn main() {
    no_core_dumps();
    hold_while_asked();
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();

    let checks: &[(&str, fn())] = &[
        ("results_equal_local_calls", results_equal_local_calls),
        ("jobs_run_in_other_processes", jobs_run_in_other_processes),
        ("hosts_are_targeted", hosts_are_targeted),
        ("a_caught_panic_keeps_the_worker", a_caught_panic_keeps_the_worker),
        ("a_value_not_sent_back_is_not_encoded", a_value_not_sent_back_is_not_encoded),
        ("a_stack_overflow_retires_the_worker", a_stack_overflow_retires_the_worker),
        (
            "a_job_after_an_overflow_does_not_inherit_a_held_lock",
            a_job_after_an_overflow_does_not_inherit_a_held_lock,
        ),
        ("an_unknown_function_is_an_error", an_unknown_function_is_an_error),
        (
            "every_death_loses_only_its_task_and_restarts_the_slot",
            every_death_loses_only_its_task_and_restarts_the_slot,
        ),
        ("no_job_is_lost_when_workers_die", no_job_is_lost_when_workers_die),
        ("a_cancelled_task_s_worker_is_replaced", a_cancelled_task_s_worker_is_replaced),
        ("a_time_limit_stops_a_remote_task", a_time_limit_stops_a_remote_task),
        ("finalize_ends_every_worker", finalize_ends_every_worker),
        ("a_worker_cannot_start_workers", a_worker_cannot_start_workers),
        (
            "with_every_slot_down_a_spawn_never_runs_in_the_spawner",
            with_every_slot_down_a_spawn_never_runs_in_the_spawner,
        ),
        ("a_restarting_worker_does_not_block_the_spawner", a_restarting_worker_does_not_block_the_spawner),
        ("a_free_slot_loop_sees_every_end", a_free_slot_loop_sees_every_end),
        (
            "a_worker_that_cannot_restart_loses_its_job_and_its_slot",
            a_worker_that_cannot_restart_loses_its_job_and_its_slot,
        ),
    ];
    common::run_checks(checks);
}

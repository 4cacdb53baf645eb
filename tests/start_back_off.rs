//! A worker process that dies while it is still starting (before its hello) does not take its
//! slot out of service for good: the slot is down (not free) and its worker is started again
//! after a back-off (10 ms, doubling, at most 5 s), until one connects; a program that always
//! fails to start is not restarted in a busy loop. Past a limit of failed starts in a row the
//! slot is out of service for good: a program that never starts does not keep a spawn waiting
//! for ever. Process machine only, driven directly as a `VirtualMachine` and through the
//! scheduler. This program has its own `main`, since ProcessVm's workers run it again.

mod common;

use common::with_watchdog;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cos::{
    Error, Event, LostCause, ProcessVm, ProcessVmBuilder, Registry, RemoteCall, RemoteFn, Spawn,
    VirtualMachine, Wait,
};

/// Names a file: a worker started while it is set appends a line to it and exits with status
/// 7 before it connects, as long as the file has fewer lines than [`FAIL_TIMES_ENV`] says.
const FAIL_LOG_ENV: &str = "COS_TEST_FAIL_LOG";
const FAIL_TIMES_ENV: &str = "COS_TEST_FAIL_TIMES";

static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);
static DIES: RemoteFn<(), u64> = RemoteFn::new("dies", |()| std::process::exit(3));

fn registry() -> Registry {
    Registry::new().with(&DOUBLE).with(&DIES)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// In a worker: fails its start while the log asks for it.
fn fail_start_while_asked() {
    let (Some(log), Some(times)) = (std::env::var_os(FAIL_LOG_ENV), std::env::var(FAIL_TIMES_ENV).ok())
    else {
        return;
    };
    let log = PathBuf::from(log);
    if lines(&log) < times.parse().unwrap() {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        writeln!(f, "{}", std::process::id()).unwrap();
        std::process::exit(7);
    }
}

/// A one-slot machine whose worker dies after the test asks its next workers to fail `times`
/// starts; the log of the failed starts.
fn machine_failing(times: usize, name: &str) -> (ProcessVm, PathBuf) {
    machine_failing_with(ProcessVm::builder(registry()), times, name)
}

/// As [`machine_failing`], with the machine built from `builder`.
fn machine_failing_with(builder: ProcessVmBuilder, times: usize, name: &str) -> (ProcessVm, PathBuf) {
    let mut vm = builder.slots_per_host(1).build().expect("worker processes");
    let log = std::env::temp_dir().join(format!("cos-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    std::env::set_var(FAIL_LOG_ENV, &log);
    std::env::set_var(FAIL_TIMES_ENV, times.to_string());
    let task = vm.spawn_function(&RemoteCall::new("dies", &()).unwrap(), None).unwrap();
    match vm.receive(Wait::Forever).unwrap() {
        Some(Event::Lost { task: t, cause }) => assert_eq!((t, cause), (task, LostCause::Exit(3))),
        other => panic!("{other:?}"),
    }
    (vm, log)
}

/// Drives the machine until `done` or `limit` has passed.
fn drive(vm: &mut ProcessVm, limit: Duration, mut done: impl FnMut(&ProcessVm) -> bool) {
    let end = Instant::now() + limit;
    while !done(vm) && Instant::now() < end {
        let event = vm.receive(Wait::Until(Instant::now() + Duration::from_millis(20))).unwrap();
        assert!(event.is_none(), "no task runs: {event:?}");
    }
}

fn a_slot_whose_worker_fails_to_start_comes_back() {
    let (mut vm, log) = machine_failing(3, "back-off");
    let mut seen_down = false;
    drive(&mut vm, Duration::from_secs(30), |vm| {
        seen_down |= vm.free_slots() == 0;
        lines(&log) >= 3 && vm.free_slots() == 1
    });
    std::env::remove_var(FAIL_LOG_ENV);
    assert_eq!(lines(&log), 3, "three failed starts");
    assert!(seen_down, "the slot was counted down while its worker could not start");
    assert_eq!(vm.free_slots(), 1, "the slot is back");
    let task = vm.spawn_function(&RemoteCall::new("double", &21u64).unwrap(), None).unwrap();
    match vm.receive(Wait::Forever).unwrap() {
        Some(Event::Finished { task: t, result: Ok(bytes) }) => {
            assert_eq!(t, task);
            assert_eq!(postcard::from_bytes::<u64>(&bytes).unwrap(), 42);
        }
        other => panic!("{other:?}"),
    }
    vm.finalize();
    let _ = std::fs::remove_file(&log);
}

/// Back-off from 10 ms, doubling: at most 7 starts in 600 ms (10 + 20 + ... + 320 = 630 ms).
fn a_worker_that_always_fails_is_not_restarted_in_a_busy_loop() {
    let (mut vm, log) = machine_failing(usize::MAX, "busy-loop");
    let started = Instant::now();
    drive(&mut vm, Duration::from_millis(600), |_| false);
    let elapsed = started.elapsed();
    let starts = lines(&log);
    std::env::remove_var(FAIL_LOG_ENV);
    println!("an always failing worker: {starts} failed starts in {elapsed:?}");
    assert!(starts >= 1, "the slot's worker is started again");
    assert!(starts <= 8, "{starts} starts in {elapsed:?}");
    assert_eq!(vm.free_slots(), 0, "the slot is down");
    vm.finalize();
    let _ = std::fs::remove_file(&log);
}

/// Three failed starts in a row (1 ms, then 2 ms, 4 ms at most between them) take the only
/// slot out of service: the job that waited for it is lost as `Start`, a blocking spawn is a
/// deadlock, a non-blocking one finds no free slot, and nothing runs in the spawner.
fn a_worker_that_never_starts_takes_its_slot_out_of_service() {
    let builder = ProcessVm::builder(registry())
        .start_back_off(Duration::from_millis(1), Duration::from_millis(4))
        .max_failed_starts(3);
    let (vm, log) = machine_failing_with(builder, usize::MAX, "never-starts");
    assert!(cos::set_vm(vm).unwrap());
    with_watchdog(
        Duration::from_secs(60),
        "a_worker_that_never_starts_takes_its_slot_out_of_service",
        || {
            // The slot's new worker is starting: the job waits for it, and is lost with it.
            let waiting = cos::spawn_remote(&DOUBLE, 1).expect("the starting slot takes the job");
            let r = cos::join(waiting);
            assert!(
                matches!(&r, Err(Error::WorkerLost(l)) if matches!(l.cause, LostCause::Start(_))),
                "{r:?}"
            );
            // Blocking: waits while the slot may come back, then nothing can serve it.
            let blocking = Spawn::new(&DOUBLE, 2).start();
            assert!(matches!(blocking, Err(Error::Deadlock(_))), "got {blocking:?}");
            let now = Spawn::new(&DOUBLE, 3).block(false).enqueue(false).start();
            assert!(matches!(now, Err(Error::NoFreeSlot)), "got {now:?}");
        },
    );
    std::env::remove_var(FAIL_LOG_ENV);
    assert_eq!(lines(&log), 3, "three failed starts, then no more");
    assert_eq!(cos::free_slots(), Some(0), "the slot is out of service");
    cos::finalize();
    let _ = std::fs::remove_file(&log);
}

fn main() {
    fail_start_while_asked();
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("a_slot_whose_worker_fails_to_start_comes_back", a_slot_whose_worker_fails_to_start_comes_back),
        (
            "a_worker_that_always_fails_is_not_restarted_in_a_busy_loop",
            a_worker_that_always_fails_is_not_restarted_in_a_busy_loop,
        ),
        (
            "a_worker_that_never_starts_takes_its_slot_out_of_service",
            a_worker_that_never_starts_takes_its_slot_out_of_service,
        ),
    ];
    common::run_checks(checks);
}

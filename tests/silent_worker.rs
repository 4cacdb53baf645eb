//! A worker that stops (SIGSTOP) while its job runs is told from a slow job by its heartbeats:
//! after `interval * missed` without one its task ends with `Error::WorkerLost` of cause
//! `LostCause::Silent`, the stopped process is killed and a new one serves the slot; a slow
//! job that keeps its heartbeats runs to its end. Process machine only (the thread and
//! simulated machines have no connection that can go silent). This program has its own
//! `main`, since ProcessVm's workers run it again.

mod common;

use std::time::Duration;

use cos::{Error, LostCause, ProcessVm, Registry, RemoteFn, Spawn, TaskId};

/// Only a broken machine takes this long.
const LONG: Duration = Duration::from_secs(20);

/// Tells the spawner its worker's pid, then waits for ever.
static STOPPABLE: RemoteFn<(), ()> = RemoteFn::new("stoppable", |()| {
    cos::send_message(TaskId::SPAWNER, &std::process::id()).unwrap();
    loop {
        std::thread::park();
    }
});
/// Blocks its worker's serving thread for `ms` milliseconds, then returns its pid.
static SLOW: RemoteFn<u64, u32> = RemoteFn::new("slow", |ms| {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
});

fn registry() -> Registry {
    Registry::new().with(&STOPPABLE).with(&SLOW)
}

/// Heartbeats every 20 ms; silent after 5 missed (100 ms).
fn set_machine() {
    let vm = ProcessVm::builder(registry())
        .slots_per_host(1)
        .heartbeat(Duration::from_millis(20), 5)
        .build()
        .expect("worker processes");
    assert_eq!(cos::set_vm(vm), Ok(true));
}

fn a_stopped_worker_is_lost_as_silent() {
    set_machine();
    let s = Spawn::new(&STOPPABLE, ()).start().unwrap();
    let (_, pid) = cos::receive_message::<u32>(Some(LONG)).unwrap().expect("the worker's pid");
    // SAFETY: kill(2) sends a signal to the process `pid`, the worker this machine started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let stopped = std::time::Instant::now();
    let joined = cos::join_timeout(&[s.task.tid()], LONG).map(|j| j.map(|j| j.value::<()>()));
    println!("a stopped worker was lost {:?} after its SIGSTOP (bound 100 ms)", stopped.elapsed());
    match joined {
        Ok(Some(Err(Error::WorkerLost(l)))) => {
            assert!(matches!(l.cause, LostCause::Silent(_)), "{l:?}");
        }
        other => panic!("not lost as silent: {other:?}"),
    }
    common::assert_gone(pid as i32);
    let next = cos::dispatch_single(cos::job(&SLOW, 0)).unwrap();
    assert_ne!(next, pid, "a new worker serves the slot");
}

/// A job ten times as long as the silence bound is not taken for a silent worker.
fn a_slow_job_with_heartbeats_runs_to_its_end() {
    set_machine();
    let before = cos::dispatch_single(cos::job(&SLOW, 0)).unwrap();
    assert_eq!(cos::dispatch_single(cos::job(&SLOW, 1000)), Ok(before));
    assert_eq!(cos::dispatch_single(cos::job(&SLOW, 0)), Ok(before), "the same worker serves on");
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("a_stopped_worker_is_lost_as_silent", a_stopped_worker_is_lost_as_silent),
        ("a_slow_job_with_heartbeats_runs_to_its_end", a_slow_job_with_heartbeats_runs_to_its_end),
    ];
    common::run_checks(checks);
}

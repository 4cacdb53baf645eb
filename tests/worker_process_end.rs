//! A worker process that ends while a process it forked still holds its socket is lost at its
//! own end, with its exit status: the spawner watches the process it started, not only the
//! socket. Process machine only. This program has its own `main`, since ProcessVm's workers run
//! it again.

mod common;

use std::time::Duration;

use cos::{Error, LostCause, ProcessVm, Registry, RemoteFn, Spawn, TaskId};

/// Only a broken machine takes this long.
const LONG: Duration = Duration::from_secs(20);

/// Forks a child that inherits the worker's socket and waits for ever, tells the spawner the
/// child's pid, and exits with status 5.
static FORKS: RemoteFn<(), ()> = RemoteFn::new("forks", |()| {
    // SAFETY: fork(2) has no arguments; in the child, which has only this thread, only
    // async-signal-safe functions run (pause(2) and _exit(2)).
    let child = unsafe { libc::fork() };
    if child == 0 {
        loop {
            // SAFETY: pause(2) takes nothing and waits for a signal.
            unsafe { libc::pause() };
        }
    }
    assert!(child > 0, "fork failed");
    cos::send_message(TaskId::SPAWNER, &child).unwrap();
    std::process::exit(5)
});
static PID: RemoteFn<(), u32> = RemoteFn::new("pid", |()| std::process::id());

fn registry() -> Registry {
    Registry::new().with(&FORKS).with(&PID)
}

fn a_worker_is_lost_when_its_process_ends() {
    common::become_subreaper();
    // The silence bound is far off: only the process's end can end the task in time.
    let vm = ProcessVm::builder(registry())
        .slots_per_host(1)
        .heartbeat(Duration::from_secs(1), 120)
        .build()
        .expect("worker processes");
    assert_eq!(cos::set_vm(vm), Ok(true));
    let s = Spawn::new(&FORKS, ()).start().unwrap();
    let (_, child) = cos::receive_message::<i32>(Some(LONG)).unwrap().expect("the child's pid");
    let joined = cos::join_timeout(&[s.task.tid()], LONG).map(|j| j.map(|j| j.value::<()>()));
    // SAFETY: kill(2) sends SIGKILL to the test's own grandchild.
    unsafe { libc::kill(child, libc::SIGKILL) };
    common::assert_gone(child);
    match joined {
        Ok(Some(Err(Error::WorkerLost(l)))) => assert_eq!(l.cause, LostCause::Exit(5)),
        other => panic!("not lost with its exit status: {other:?}"),
    }
    assert!(cos::dispatch_single(cos::job(&PID, ())).is_ok(), "a new worker serves the slot");
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] =
        &[("a_worker_is_lost_when_its_process_ends", a_worker_is_lost_when_its_process_ends)];
    common::run_checks(checks);
}

//! `ProcessGroup::wait` inside a task is cooperative: while a remote function (or a local task)
//! waits for its program, the other tasks of its thread run on (here, a local task the function
//! spawned counts its turns). Without a machine, and on every machine; a process machine's
//! workers are this program started again (`harness = false`).

mod common;

use std::cell::Cell;
use std::process::Command;
use std::rc::Rc;

use common::On;
use cos::{EnvironmentSpec, ProcessGroup, Registry, RemoteFn};

/// Waits for a short program while a local task of its own counts its turns; returns how many
/// turns the counter had while the program ran (a spawned task runs first, so its turns before
/// the wait are not counted).
fn wait_while_another_task_runs() -> u64 {
    let turns = Rc::new(Cell::new(0u64));
    let done = Rc::new(Cell::new(false));
    let (t, d) = (Rc::clone(&turns), Rc::clone(&done));
    let counter = cos::spawn(move || {
        while !d.get() {
            t.set(t.get() + 1);
            cos::yield_now();
        }
    })
    .unwrap();
    let mut g = ProcessGroup::start(Command::new("sleep").arg("0.2")).unwrap();
    let before = turns.get();
    g.wait(None).unwrap();
    let seen = turns.get() - before;
    done.set(true);
    cos::join(counter).unwrap();
    seen
}

static WAIT: RemoteFn<(), u64> = RemoteFn::new("wait", |()| wait_while_another_task_runs());

fn registry() -> Registry {
    Registry::new().with(&WAIT)
}

fn in_a_local_task() {
    let task = cos::spawn(wait_while_another_task_runs).unwrap();
    assert!(cos::join(task).unwrap() > 0, "the other task ran while the program ran");
}

fn in_a_remote_task(on: On) {
    on.set_with(registry(), 1, 2, EnvironmentSpec::new());
    let turns = cos::dispatch_single(cos::job(&WAIT, ())).unwrap();
    assert!(turns > 0, "the function's local task ran while it waited");
    cos::finalize();
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("local", in_a_local_task),
        ("sim", || in_a_remote_task(On::Sim)),
        ("thread", || in_a_remote_task(On::Thread)),
        ("process", || in_a_remote_task(On::Process)),
    ];
    common::run_checks(checks);
}

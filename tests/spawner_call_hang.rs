//! A spawner call that never returns does not stop the spawner: its other tasks run on while
//! it hangs, the calling remote task's time limit fires (its joiner gets `Error::Timeout`),
//! and the next spawner call runs on a fresh runner (the hung one is abandoned). On the thread
//! and the process machine (the simulated machine runs each job to its end inside `spawn`, so
//! a job that hangs hangs it, spawner call or not); a process machine's workers are this
//! program started again (`harness = false`). A watchdog ends the program if it hangs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::On;
use cos::{Error, Registry, RemoteFn};

/// Set in the spawner when the hanging call has started.
static HANGING: AtomicBool = AtomicBool::new(false);

/// Run in the spawner: never returns.
static FOREVER: RemoteFn<(), ()> = RemoteFn::new("forever", |()| {
    HANGING.store(true, Ordering::SeqCst);
    loop {
        std::thread::park();
    }
});
static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);

/// Jobs: call the functions above in the spawner (the hung one's worker gives up when its
/// task is cancelled: an error then, ignored).
static ASK_FOREVER: RemoteFn<(), ()> = RemoteFn::new("ask_forever", |()| {
    let _ = cos::spawner_call(&FOREVER, (), false);
});
static ASK_DOUBLE: RemoteFn<u64, u64> =
    RemoteFn::new("ask_double", |x| cos::spawner_call(&DOUBLE, x, false).unwrap().unwrap());

fn registry() -> Registry {
    Registry::new().with(&FOREVER).with(&DOUBLE).with(&ASK_FOREVER).with(&ASK_DOUBLE)
}

fn a_hanging_spawner_call_stops_only_its_caller(on: On) {
    on.set(registry(), 1, 2);
    HANGING.store(false, Ordering::SeqCst);
    let hung = cos::Spawn::new(&ASK_FOREVER, ()).time_limit(Duration::from_millis(300)).start().unwrap();
    // A task of the spawner runs while the call hangs.
    let local = cos::spawn(|| {
        while !HANGING.load(Ordering::SeqCst) {
            cos::yield_now();
        }
        "ran while the call hangs"
    })
    .unwrap();
    assert_eq!(cos::join(local), Ok("ran while the call hangs"));
    // A call made meanwhile waits for the hung one, then runs on a fresh runner.
    let waiting = cos::spawn_remote(&ASK_DOUBLE, 21).unwrap();
    assert_eq!(cos::join(hung.task), Err(Error::Timeout));
    assert_eq!(cos::join(waiting), Ok(42));
    assert_eq!(cos::dispatch_single(cos::job(&ASK_DOUBLE, 2)), Ok(4));
    cos::finalize();
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("spawner_call_hang: the spawner hangs");
        std::process::exit(2);
    });
    let checks: &[(&str, fn())] = &[
        ("thread", || a_hanging_spawner_call_stops_only_its_caller(On::Thread)),
        ("process", || a_hanging_spawner_call_stops_only_its_caller(On::Process)),
    ];
    common::run_checks(checks);
}

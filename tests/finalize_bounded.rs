//! `finalize` never waits for a remote job that hangs: a `ThreadVm` gives busy worker threads
//! a grace and then detaches them, both when `cos::finalize` is called and when the spawner's
//! thread ends with the machine still set. (The process machine kills busy workers:
//! `tests/process_vm.rs`, `finalize_ends_every_worker`.)

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use cos::{Error, MachineErrorKind, Registry, RemoteFn, ThreadVm};

/// A job that waits until the test opens the gate; the watchdog opens it after a minute at
/// the latest, so that a `finalize` that waits for the job returns, late, and the test fails
/// instead of hanging.
static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

static HANGS: RemoteFn<(), u32> = RemoteFn::new("hangs", |()| {
    let mut open = GATE.0.lock().unwrap();
    while !*open {
        open = GATE.1.wait(open).unwrap();
    }
    7
});

static STARTED: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

static SIGNALS_THEN_HANGS: RemoteFn<(), u32> = RemoteFn::new("signals_then_hangs", |()| {
    *STARTED.0.lock().unwrap() += 1;
    STARTED.1.notify_all();
    HANGS.call(())
});

fn open_gate() {
    *GATE.0.lock().unwrap() = true;
    GATE.1.notify_all();
}

fn gate_open() -> bool {
    *GATE.0.lock().unwrap()
}

fn wait_started(n: usize) {
    let mut started = STARTED.0.lock().unwrap();
    while *started < n {
        started = STARTED.1.wait(started).unwrap();
    }
}

fn machine() -> ThreadVm {
    ThreadVm::builder(Registry::new().with(&HANGS).with(&SIGNALS_THEN_HANGS))
        .slots_per_host(1)
        .finalize_grace(Duration::from_millis(10))
        .build()
}

#[test]
fn finalize_and_the_thread_s_end_do_not_wait_for_a_hung_job() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        open_gate();
    });

    // cos::finalize with a job that hangs.
    cos::set_vm(machine()).unwrap();
    let job = cos::spawn_remote(&SIGNALS_THEN_HANGS, ()).unwrap();
    wait_started(1);
    cos::finalize();
    assert!(!gate_open(), "finalize waited for the hung job");
    match cos::join(job) {
        Err(Error::Vm(e)) => assert_eq!(e.kind(), MachineErrorKind::Finalized),
        other => panic!("expected a finalized machine, got {other:?}"),
    }

    // A spawner thread that ends with the machine set and a job hanging.
    std::thread::spawn(|| {
        cos::set_vm(machine()).unwrap();
        let _job = cos::spawn_remote(&SIGNALS_THEN_HANGS, ()).unwrap();
        wait_started(2);
    })
    .join()
    .unwrap();
    assert!(!gate_open(), "the thread's end waited for the hung job");
    open_gate();
}

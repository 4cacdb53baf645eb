//! The spawner's writes to a worker are bounded: a worker that stops reading (here its job
//! never receives, while its heartbeats go on) does not block the spawner writing a frame
//! larger than the socket's buffer. Once nothing of the frame has been taken for the frame
//! timeout, the worker is lost as `LostCause::Silent` and killed, and the spawner goes on.
//! Process machine only, driven directly as a `VirtualMachine`. This program has its own
//! `main`, since ProcessVm's workers run it again.

mod common;

use common::with_watchdog;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cos::{Event, LostCause, ProcessVm, Registry, RemoteCall, RemoteFn, VirtualMachine, Wait};

/// Makes the file it is given, then never returns and never receives.
static DEAF: RemoteFn<PathBuf, ()> = RemoteFn::new("deaf", |started| {
    std::fs::write(started, b"").unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(50));
    }
});

fn registry() -> Registry {
    Registry::new().with(&DEAF)
}

fn a_worker_that_stops_reading_does_not_block_the_spawner() {
    let bound = Duration::from_millis(200);
    let mut vm = ProcessVm::builder(registry())
        .slots_per_host(1)
        .frame_timeout(bound)
        .heartbeat(Duration::from_millis(20), 50)
        .build()
        .expect("worker processes");
    let started = std::env::temp_dir().join(format!("cos-deaf-{}", std::process::id()));
    let _ = std::fs::remove_file(&started);
    let task = vm.spawn_function(&RemoteCall::new("deaf", &started).unwrap(), None).unwrap();
    // The job runs (its worker reads no more) once the file is there.
    while !started.exists() {
        let event = vm.receive(Wait::Until(Instant::now() + Duration::from_millis(10))).unwrap();
        assert!(event.is_none(), "{event:?}");
    }
    with_watchdog(Duration::from_secs(60), "a_worker_that_stops_reading_does_not_block_the_spawner", || {
        // Far more than the socket's buffers hold.
        let sent = vm.send_message(task, vec![7u8; 16 << 20]);
        assert!(sent.is_err(), "the message cannot have been taken");
        match vm.receive(Wait::Forever).unwrap() {
            Some(Event::Lost { task: t, cause }) => assert_eq!((t, cause), (task, LostCause::Silent(bound))),
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(vm.free_slots(), 1, "the slot has a new worker");
    vm.finalize();
    let _ = std::fs::remove_file(&started);
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[(
        "a_worker_that_stops_reading_does_not_block_the_spawner",
        a_worker_that_stops_reading_does_not_block_the_spawner,
    )];
    common::run_checks(checks);
}

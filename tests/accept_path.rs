//! The process machine's accepting path is bounded and survives errors: a connection that
//! sends its hello a byte at a time, or a flood of connections that exhausts the spawner's file
//! descriptors, does not keep a restarted worker from connecting.
//!
//! Runs without the test harness (`harness = false`): `main` first calls `cos::start`. Each
//! check gives the restarted worker 5 s to connect; what stood in its way lasts longer than
//! that (a slow hello goes on for a minute; a failed accept ended the accepting thread).

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cos::{Error, LostCause, ProcessVm, Registry, RemoteFn};

static PID: RemoteFn<(), u32> = RemoteFn::new("pid", |()| std::process::id());
static KILLED: RemoteFn<(), u32> = RemoteFn::new("killed", |()| {
    // SAFETY: kill(2) on this process's own pid with a valid signal number.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("killed")
});

fn registry() -> Registry {
    Registry::new().with(&PID).with(&KILLED)
}

fn machine() -> ProcessVm {
    ProcessVm::builder(registry()).slots_per_host(1).connect_timeout(Duration::from_secs(5)).build().unwrap()
}

/// The spawner's socket: the newest `cos-<pid>-*` directory of the temporary directory.
fn socket() -> PathBuf {
    let prefix = format!("cos-{}-", std::process::id());
    let mut dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| e.path().join("socket").exists())
        .collect();
    dirs.sort_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    dirs.last().expect("the spawner's socket directory").path().join("socket")
}

/// Kills the worker and checks that a new one takes the next job.
fn the_worker_is_replaced(old: u32) {
    let lost = cos::dispatch_single(cos::job(&KILLED, ()));
    assert!(
        matches!(&lost, Err(Error::WorkerLost(l)) if l.cause == LostCause::Signal(libc::SIGKILL)),
        "{lost:?}"
    );
    let new = cos::dispatch_single(cos::job(&PID, ()));
    assert!(matches!(new, Ok(pid) if pid != old && pid != std::process::id()), "the new worker: {new:?}");
}

fn a_slow_hello_does_not_hold_up_a_worker() {
    assert!(cos::set_vm(machine()).unwrap());
    let old = cos::dispatch_single(cos::job(&PID, ())).unwrap();
    // A hello of 1,000 bytes, sent a byte a second.
    let mut slow = UnixStream::connect(socket()).unwrap();
    slow.write_all(&[0xe8]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let sender = std::thread::spawn(move || {
        for b in [0x03, 0, 0].into_iter().chain(std::iter::repeat_n(0, 60)) {
            std::thread::sleep(Duration::from_secs(1));
            if stop2.load(Ordering::SeqCst) || slow.write_all(&[b]).is_err() {
                return;
            }
        }
    });
    the_worker_is_replaced(old);
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
}

fn running_out_of_file_descriptors_does_not_end_accepting() {
    assert!(cos::set_vm(machine()).unwrap());
    let old = cos::dispatch_single(cos::job(&PID, ())).unwrap();
    let socket = socket();
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes one `rlimit` to the pointer, a live local.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    let low = libc::rlimit { rlim_cur: 256.min(limit.rlim_cur), rlim_max: limit.rlim_max };
    // SAFETY: setrlimit(2) reads one `rlimit` from the pointer, a live local.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    // Files until this process has no descriptor left; then a connection in the place of one,
    // so that the spawner's accept finds none free.
    let mut files = Vec::new();
    while files.len() < 4000 {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(_) => break,
        }
    }
    assert!(files.len() < 4000, "the descriptors ran out");
    files.pop();
    // A connection in the last descriptor, with a hello in an old worker's form (slot 1, a pid):
    // the spawner keeps it open while it looks at it, and accepts again with no descriptor free.
    let idle = UnixStream::connect(&socket).and_then(|mut s| s.write_all(&[2, 0, 0, 0, 1, 1]).map(|()| s));
    assert!(idle.is_ok(), "a connection in the last descriptor: {idle:?}");
    std::thread::sleep(Duration::from_millis(200));
    drop(files);
    drop(idle);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    the_worker_is_replaced(old);
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    common::run_checks(&[
        ("a_slow_hello_does_not_hold_up_a_worker", a_slow_hello_does_not_hold_up_a_worker),
        (
            "running_out_of_file_descriptors_does_not_end_accepting",
            running_out_of_file_descriptors_does_not_end_accepting,
        ),
    ]);
}

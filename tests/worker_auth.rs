//! Only the processes the spawner started speak as its workers: a process of the same user
//! that connects to the spawner's socket and says hello in the name of a starting worker never
//! wins the slot, and the real worker takes it.
//!
//! Runs without the test harness (`harness = false`): `main` first calls `cos::start`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use cos::{Error, LostCause, ProcessVm, Registry, RemoteFn};
use serde::Serialize;

static PID: RemoteFn<(), u32> = RemoteFn::new("pid", |()| std::process::id());
static KILLED: RemoteFn<(), u32> = RemoteFn::new("killed", |()| {
    // SAFETY: kill(2) on this process's own pid with a valid signal number.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("killed")
});

fn registry() -> Registry {
    Registry::new().with(&PID).with(&KILLED)
}

/// Set for the workers started after it: such a worker waits while the file it names exists.
const HOLD_ENV: &str = "COS_TEST_HOLD_START";

fn hold_while_asked() {
    if let Some(path) = std::env::var_os(HOLD_ENV) {
        while std::path::Path::new(&path).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A hello as an old worker said it: slot and pid.
#[derive(Serialize)]
struct ShortHello {
    slot: u32,
    pid: u32,
}

/// A hello with a guessed secret.
#[derive(Serialize)]
struct GuessedHello {
    slot: u32,
    pid: u32,
    secret: [u8; 32],
}

fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut f = (bytes.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(bytes);
    f
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

/// This process's living children other than `except`.
fn children(except: u32) -> Vec<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != except)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid ...: the fields after the last ')'.
                let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.len() > 1 && fields[1] == me && fields[0] != "Z"
            })
        })
        .collect()
}

/// Connects and says `hello`; the connection reads whatever the spawner sends it and then
/// hangs up, as a forger that took a job and vanished would.
fn forge(socket: &PathBuf, hello: &[u8]) -> std::thread::JoinHandle<()> {
    let mut s = UnixStream::connect(socket).expect("the socket takes connections");
    s.write_all(&frame(hello)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    })
}

fn a_forged_hello_never_wins_a_slot() {
    let vm = ProcessVm::builder(registry()).slots_per_host(1).connect_timeout(Duration::from_secs(30));
    assert!(cos::set_vm(vm.build().unwrap()).unwrap());
    let old = cos::dispatch_single(cos::job(&PID, ())).unwrap();

    // The worker dies; its replacement waits for the hold file to go before it connects.
    let hold = std::env::temp_dir().join(format!("cos-auth-hold-{}", std::process::id()));
    std::fs::write(&hold, b"").unwrap();
    std::env::set_var(HOLD_ENV, &hold);
    let lost = cos::dispatch_single(cos::job(&KILLED, ()));
    std::env::remove_var(HOLD_ENV);
    assert!(
        matches!(&lost, Err(Error::WorkerLost(l)) if l.cause == LostCause::Signal(libc::SIGKILL)),
        "{lost:?}"
    );
    let new = children(old);
    assert_eq!(new.len(), 1, "one replacement worker: {new:?}");
    let new = new[0];

    // Hellos in the replacement's name are queued before it connects.
    let socket = socket();
    let short = postcard::to_allocvec(&ShortHello { slot: 1, pid: new }).unwrap();
    let guessed = postcard::to_allocvec(&GuessedHello { slot: 1, pid: new, secret: [0; 32] }).unwrap();
    let forgers = [forge(&socket, &short), forge(&socket, &guessed)];

    let job = cos::spawn_remote(&PID, ()).unwrap();
    std::fs::remove_file(&hold).unwrap();
    assert_eq!(cos::join(job), Ok(new), "the job ran on the worker the spawner started");
    cos::finalize();
    for f in forgers {
        f.join().unwrap();
    }
}

fn main() {
    hold_while_asked();
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    common::run_checks(&[("a_forged_hello_never_wins_a_slot", a_forged_hello_never_wins_a_slot)]);
}

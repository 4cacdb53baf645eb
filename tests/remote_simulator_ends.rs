//! A simulator started by a remote task (with `cos::ProcessGroup`) ends with the task, with
//! the child it forked, checked by pid: when the task runs past its time limit, when it is
//! cancelled, and when its worker is lost. On the thread machine the cancelled job's thread
//! runs on, so its process groups are ended by the machine; on the process machine the worker
//! process is killed, and its groups die with it. Finalizing the machine while the task runs
//! ends its simulator too. (A simulated machine runs each task to its
//! end when it is spawned, so there is nothing left to time out or cancel there.)
//!
//! Runs without the test harness: the process machine's workers are this program started again.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::{assert_gone, On};
use cos::{EnvironmentSpec, Error, ProcessGroup, Registry, RemoteFn, Spawn, Tid};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pids a running task reported: its worker process, its simulator, the simulator's child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Pids {
    worker: u32,
    leader: u32,
    child: i32,
}

static REPORTED: Mutex<Option<Pids>> = Mutex::new(None);

/// Runs in the spawner: keeps what the task reported.
static REPORT: RemoteFn<Pids, ()> = RemoteFn::new("report", |p| *REPORTED.lock().unwrap() = Some(p));

/// Starts a simulator that forks a child, and tells the spawner their pids (waiting for the
/// answer, so the spawner knows them before anything else happens to the task).
fn start_simulator() -> ProcessGroup {
    let mut g = ProcessGroup::start(
        Command::new("sh").args(["-c", "sleep 100 & echo $!; exec sleep 100"]).stdout(Stdio::piped()),
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(g.stdout().unwrap()).read_line(&mut line).unwrap();
    let pids = Pids { worker: std::process::id(), leader: g.id(), child: line.trim().parse().unwrap() };
    cos::spawner_call(&REPORT, pids, false).unwrap();
    g
}

/// Runs the simulator to its end (which only a kill brings).
static SIMULATE: RemoteFn<(), u8> = RemoteFn::new("simulate", |()| {
    let mut g = start_simulator();
    let _ = g.wait(None);
    0
});

/// A value whose encoding panics: the panic escapes the registry and loses the worker.
#[derive(Debug)]
struct Poison;

impl Serialize for Poison {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("this value cannot be serialized")
    }
}

impl<'de> Deserialize<'de> for Poison {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Poison)
    }
}

/// Leaks its simulator (no guard left to end it), then breaks its worker.
static LEAK_AND_BREAK: RemoteFn<(), Poison> = RemoteFn::new("leak_and_break", |()| {
    std::mem::forget(start_simulator());
    Poison
});

fn registry() -> Registry {
    Registry::new().with(&REPORT).with(&SIMULATE).with(&LEAK_AND_BREAK)
}

/// Waits, joining with short timeouts so the machine answers the task's spawner call, until the
/// task `tid` has reported its pids.
fn reported(tid: Tid) -> Pids {
    for _ in 0..1000 {
        if let Some(p) = *REPORTED.lock().unwrap() {
            return p;
        }
        match cos::join_timeout(&[tid], Duration::from_millis(10)) {
            Err(Error::JoinTimeout) => {}
            other => panic!("the task ended before it reported: {other:?}"),
        }
    }
    panic!("the task never reported its pids");
}

fn start(on: On) {
    *REPORTED.lock().unwrap() = None;
    on.set_with(registry(), 1, 2, EnvironmentSpec::new().local_storage(true));
}

fn assert_simulator_gone(p: Pids) {
    assert_gone(p.leader as i32);
    assert_gone(p.child);
}

fn a_time_limit_ends_the_simulator(on: On) {
    start(on);
    let task = Spawn::new(&SIMULATE, ()).time_limit(Duration::from_secs(3)).start().unwrap().task;
    assert_eq!(cos::join(task), Err(Error::Timeout));
    let p = REPORTED.lock().unwrap().expect("the task reported before its time ran out");
    assert_simulator_gone(p);
    // The machine serves on.
    *REPORTED.lock().unwrap() = None;
    let next = Spawn::new(&SIMULATE, ()).start().unwrap().task;
    let q = reported(next.tid());
    assert_ne!(q.leader, p.leader);
    assert_eq!(cos::cancel(next.tid()), Ok(true));
    assert_simulator_gone(q);
    cos::finalize();
}

fn a_cancel_ends_the_simulator(on: On) {
    start(on);
    let task = Spawn::new(&SIMULATE, ()).start().unwrap().task;
    let p = reported(task.tid());
    assert_eq!(cos::cancel(task.tid()), Ok(true));
    assert_eq!(cos::join(task), Err(Error::Cancelled(task.tid())));
    assert_simulator_gone(p);
    cos::finalize();
}

fn a_lost_worker_ends_the_simulator(on: On) {
    start(on);
    let (result, p) = if on == On::Process {
        // The worker process is killed from outside: nothing in it runs any more.
        let task = Spawn::new(&SIMULATE, ()).start().unwrap().task;
        let p = reported(task.tid());
        // SAFETY: kill(2) on the worker process, a child of this one that has not been reaped.
        assert_eq!(unsafe { libc::kill(p.worker as i32, libc::SIGKILL) }, 0);
        (cos::join(task).map(drop), p)
    } else {
        // The worker thread breaks with a simulator nobody holds a guard of.
        let task = Spawn::new(&LEAK_AND_BREAK, ()).start().unwrap().task;
        let p = reported(task.tid());
        (cos::join(task).map(drop), p)
    };
    assert!(matches!(result, Err(Error::WorkerLost(_))), "{result:?}");
    assert_simulator_gone(p);
    cos::finalize();
}

fn finalizing_the_machine_ends_the_simulator(on: On) {
    start(on);
    let task = Spawn::new(&SIMULATE, ()).start().unwrap().task;
    let p = reported(task.tid());
    // Returns although the task waits for a program that would run for 100 s.
    cos::finalize();
    assert_simulator_gone(p);
    assert!(matches!(cos::join(task), Err(Error::Vm(_))));
}

fn main() {
    let (local, _) = common::private_storage("remote-simulator-ends");
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    common::become_subreaper();
    let checks: &[(&str, fn())] = &[
        ("time_limit_thread", || a_time_limit_ends_the_simulator(On::Thread)),
        ("time_limit_process", || a_time_limit_ends_the_simulator(On::Process)),
        ("cancel_thread", || a_cancel_ends_the_simulator(On::Thread)),
        ("cancel_process", || a_cancel_ends_the_simulator(On::Process)),
        ("lost_worker_thread", || a_lost_worker_ends_the_simulator(On::Thread)),
        ("lost_worker_process", || a_lost_worker_ends_the_simulator(On::Process)),
        ("finalize_thread", || finalizing_the_machine_ends_the_simulator(On::Thread)),
        ("finalize_process", || finalizing_the_machine_ends_the_simulator(On::Process)),
    ];
    common::run_checks(checks);
    let _ = std::fs::remove_dir_all(local.parent().unwrap_or(&local));
}

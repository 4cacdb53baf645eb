//! A spawner killed with SIGKILL (no destructor, no `finalize`) leaves nothing running: its busy
//! worker process, the simulator the worker's task started and the simulator's child are all
//! gone, checked by pid.
//!
//! Runs without the test harness: this program runs itself as the spawner, whose worker
//! processes are this program started once more.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::assert_gone;
use cos::{ProcessGroup, ProcessVm, Registry, RemoteFn};

const ROLE: &str = "COS_TEST_SPAWNER_KILLED_ROLE";

/// Starts a simulator with a child, prints the pids (the worker's stdout is the spawner's),
/// and waits for it.
static BUSY: RemoteFn<(), u8> = RemoteFn::new("busy", |()| {
    let mut g = ProcessGroup::start(
        Command::new("sh").args(["-c", "sleep 100 & echo $!; exec sleep 100"]).stdout(Stdio::piped()),
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(g.stdout().unwrap()).read_line(&mut line).unwrap();
    println!("PIDS {} {} {}", std::process::id(), g.id(), line.trim());
    let _ = g.wait(None);
    0
});

fn registry() -> Registry {
    Registry::new().with(&BUSY)
}

/// The spawner: a process machine whose one worker runs `BUSY` until this process is killed.
fn spawner() -> ! {
    cos::set_vm(ProcessVm::builder(registry()).slots_per_host(2).build().unwrap()).unwrap();
    let _ = cos::dispatch_single(cos::job(&BUSY, ()));
    unreachable!("the spawner is killed while its task runs");
}

fn a_killed_spawner_leaves_nothing_running() {
    let mut spawner = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "spawner")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(spawner.stdout.take().unwrap());
    let pids: Vec<i32> = out
        .lines()
        .map(|l| l.unwrap())
        .find_map(|l| l.strip_prefix("PIDS ").map(|p| p.split(' ').map(|n| n.parse().unwrap()).collect()))
        .expect("the worker's pids");
    let (worker, leader, child) = (pids[0], pids[1], pids[2]);
    assert!(common::alive(worker) && common::alive(leader) && common::alive(child));
    spawner.kill().unwrap();
    spawner.wait().unwrap();
    // Reparented to this process (a subreaper), reaped here once they die.
    assert_gone(worker);
    assert_gone(leader);
    assert_gone(child);
}

fn main() {
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    if std::env::var_os(ROLE).is_some() {
        spawner();
    }
    common::become_subreaper();
    common::run_checks(&[(
        "a_killed_spawner_leaves_nothing_running",
        a_killed_spawner_leaves_nothing_running,
    )]);
}

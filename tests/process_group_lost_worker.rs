//! A worker process that is killed (SIGKILL: no guard runs, no `kill_all`) while its task's
//! simulator runs leaves nothing behind: the simulator and the child it forked are gone,
//! checked by pid. The test runs itself again as the worker.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "COS_TEST_LOST_WORKER_ROLE";

fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Waits (bounded) for `pid`, reparented to this process, to die, reaps it, and checks that it
/// is gone.
fn assert_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes the status into `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid || (rc < 0 && !alive(pid)) {
            break;
        }
        assert!(Instant::now() < deadline, "process {pid} still runs");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!alive(pid), "process {pid} still exists");
}

#[test]
fn a_killed_worker_leaves_no_simulator_behind() {
    if std::env::var_os(ROLE).is_some() {
        // The worker: start the simulator, say its pids, then hang until killed.
        let mut g = cos::ProcessGroup::start(
            Command::new("sh").args(["-c", "sleep 100 & echo $!; sleep 100"]).stdout(Stdio::piped()),
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(g.stdout().unwrap()).read_line(&mut line).unwrap();
        println!("PIDS {} {}", g.id(), line.trim());
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        unreachable!("the worker is killed before its input ends");
    }
    // SAFETY: prctl(2) PR_SET_CHILD_SUBREAPER takes one integer argument.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    let mut worker = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_killed_worker_leaves_no_simulator_behind", "--nocapture", "--test-threads=1"])
        .env(ROLE, "worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(worker.stdout.take().unwrap());
    let pids: Vec<i32> = out
        .lines()
        .map(|l| l.unwrap())
        // The test harness may have written the test's name on the same line first.
        .find_map(|l| l.split("PIDS ").nth(1).map(|p| p.split(' ').map(|n| n.parse().unwrap()).collect()))
        .expect("the worker's pids");
    let (leader, grandchild) = (pids[0], pids[1]);
    assert!(alive(leader) && alive(grandchild));
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_gone(leader);
    assert_gone(grandchild);
}

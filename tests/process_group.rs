//! External programs in their own process group: a time limit, a kill, `kill_all` (the
//! worker's call when a task ends, is cancelled or times out), dropping the guard and a
//! panicking task each end the program with every child it forked, checked by pid; failures are
//! typed (not found, exit status with the end of standard error); the working directory is the
//! task's.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cos::{EnvironmentSpec, ProcessErrorKind, ProcessGroup, WorkerIdentity};

/// Makes this test process the reaper of orphaned descendants, so that a grandchild whose
/// parent was killed can be reaped here and then checked for by pid.
fn become_subreaper() {
    // SAFETY: prctl(2) PR_SET_CHILD_SUBREAPER takes one integer argument.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
}

/// A shell that starts a background `sleep` (the grandchild), prints its pid, and sleeps itself.
fn simulator_with_a_child(script_prefix: &str) -> (ProcessGroup, i32) {
    let script = format!("{script_prefix} sleep 100 & echo $!; sleep 100");
    let mut g = ProcessGroup::start(Command::new("sh").args(["-c", &script]).stdout(Stdio::piped())).unwrap();
    let mut line = String::new();
    BufReader::new(g.stdout().unwrap()).read_line(&mut line).unwrap();
    (g, line.trim().parse().unwrap())
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Waits (bounded) for the grandchild `pid`, reparented to this process, to die and reaps it;
/// then it must be gone.
fn assert_grandchild_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes the status into `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            break;
        }
        if rc < 0 && !alive(pid) {
            // Not (yet) our child, and gone.
            break;
        }
        assert!(Instant::now() < deadline, "grandchild {pid} still runs");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!alive(pid), "grandchild {pid} still exists");
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ESRCH));
}

fn assert_leader_gone(pid: u32) {
    // The library reaped it, so the pid is free.
    assert!(!alive(pid as i32), "leader {pid} still exists");
}

#[test]
fn a_time_limit_kills_the_program_and_its_children() {
    become_subreaper();
    let (mut g, grandchild) = simulator_with_a_child("");
    assert!(alive(grandchild));
    let leader = g.id();
    let err = g.wait(Some(Instant::now() + Duration::from_millis(100))).unwrap_err();
    assert_eq!(err.kind, ProcessErrorKind::Timeout);
    assert_eq!(err.program, "sh");
    assert_leader_gone(leader);
    assert_grandchild_gone(grandchild);
}

#[test]
fn a_group_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    become_subreaper();
    // An ignored signal stays ignored in the children.
    let (mut g, grandchild) = simulator_with_a_child("trap '' TERM;");
    let leader = g.id();
    g.kill();
    assert_eq!(g.wait(None).unwrap_err().kind, ProcessErrorKind::Killed);
    assert_leader_gone(leader);
    assert_grandchild_gone(grandchild);
}

#[test]
fn kill_all_ends_every_group_of_the_thread() {
    become_subreaper();
    let (mut a, ga) = simulator_with_a_child("");
    let (mut b, gb) = simulator_with_a_child("");
    let (la, lb) = (a.id(), b.id());
    assert_eq!(cos::kill_all(), 2);
    assert_eq!(a.wait(None).unwrap_err().kind, ProcessErrorKind::Killed);
    assert_eq!(b.wait(None).unwrap_err().kind, ProcessErrorKind::Killed);
    assert_leader_gone(la);
    assert_leader_gone(lb);
    assert_grandchild_gone(ga);
    assert_grandchild_gone(gb);
    // Nothing is left to kill.
    assert_eq!(cos::kill_all(), 0);
}

#[test]
fn kill_all_leaves_other_threads_groups_alone() {
    let mut g = ProcessGroup::start(Command::new("sleep").arg("100")).unwrap();
    let other = std::thread::spawn(cos::kill_all).join().unwrap();
    assert_eq!(other, 0);
    assert!(!g.has_exited());
    g.kill();
}

#[test]
fn dropping_the_guard_kills_the_group() {
    become_subreaper();
    let (g, grandchild) = simulator_with_a_child("");
    let leader = g.id();
    drop(g);
    assert_leader_gone(leader);
    assert_grandchild_gone(grandchild);
}

#[test]
fn a_panicking_task_leaves_no_program_behind() {
    become_subreaper();
    let (tx, rx) = std::sync::mpsc::channel();
    let task = std::thread::spawn(move || {
        let (g, grandchild) = simulator_with_a_child("");
        tx.send((g.id(), grandchild)).unwrap();
        panic!("evaluation failed");
    });
    assert!(task.join().is_err());
    let (leader, grandchild) = rx.recv().unwrap();
    assert_leader_gone(leader);
    assert_grandchild_gone(grandchild);
}

#[test]
fn what_a_finished_program_left_behind_is_killed() {
    become_subreaper();
    let mut g =
        ProcessGroup::start(Command::new("sh").args(["-c", "sleep 100 & echo $!"]).stdout(Stdio::piped()))
            .unwrap();
    let mut line = String::new();
    BufReader::new(g.stdout().unwrap()).read_line(&mut line).unwrap();
    g.wait(None).unwrap();
    assert_grandchild_gone(line.trim().parse().unwrap());
}

#[test]
fn a_missing_program_is_an_error_naming_it() {
    let err = ProcessGroup::start(&mut Command::new("spice-opus-not-on-this-node")).unwrap_err();
    assert_eq!(err.kind, ProcessErrorKind::NotFound);
    assert_eq!(err.program, "spice-opus-not-on-this-node");
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    let as_crate: cos::Error = err.into();
    assert!(matches!(as_crate, cos::Error::Process(_)));
}

#[test]
fn a_missing_working_directory_cannot_start() {
    let err = ProcessGroup::start(Command::new("true").current_dir("/no/such/dir/cos")).unwrap_err();
    assert_eq!(err.kind, ProcessErrorKind::CannotStart);
}

#[test]
fn a_failure_carries_its_status_and_the_end_of_stderr() {
    let script = "head -c 20000 /dev/zero | tr '\\0' x >&2; echo; echo 'fatal: no model' >&2; exit 2";
    let mut g = ProcessGroup::start(Command::new("sh").args(["-c", script]).stdout(Stdio::null())).unwrap();
    let err = g.wait(None).unwrap_err();
    assert_eq!(err.kind, ProcessErrorKind::Failed);
    assert_eq!(err.status.and_then(|s| s.code()), Some(2));
    assert_eq!(err.stderr_tail.len(), 8 * 1024);
    assert!(err.stderr_tail.ends_with("xfatal: no model\n"), "{:?}", &err.stderr_tail[8000..]);
}

#[test]
fn a_program_killed_by_a_signal_failed() {
    let mut g = ProcessGroup::start(Command::new("sh").args(["-c", "kill -SEGV $$"])).unwrap();
    let err = g.wait(None).unwrap_err();
    assert_eq!(err.kind, ProcessErrorKind::Failed);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(err.status.and_then(|s| s.signal()), Some(libc::SIGSEGV));
}

#[test]
fn the_program_runs_in_the_tasks_working_directory() {
    let base = std::env::temp_dir().join(format!("cos-process-group-{}", std::process::id()));
    let spec = EnvironmentSpec::new().local_storage(true);
    let env = cos::prepare_in(&spec, WorkerIdentity { machine: 0, slot: 0 }, &base, &[] as &[&str]).unwrap();
    let pwd = |g: &mut ProcessGroup| {
        let mut line = String::new();
        BufReader::new(g.stdout().unwrap()).read_line(&mut line).unwrap();
        g.wait(None).unwrap();
        line.trim().to_string()
    };
    {
        let _in = env.enter();
        let mut g =
            ProcessGroup::start(Command::new("sh").args(["-c", "pwd -P"]).stdout(Stdio::piped())).unwrap();
        let expected = env.storage().unwrap().canonicalize().unwrap();
        assert_eq!(Path::new(&pwd(&mut g)), expected);
    }
    // Outside the task: the process's own working directory.
    let mut g =
        ProcessGroup::start(Command::new("sh").args(["-c", "pwd -P"]).stdout(Stdio::piped())).unwrap();
    assert_eq!(Path::new(&pwd(&mut g)), std::env::current_dir().unwrap().canonicalize().unwrap());
    cos::cleanup(env).unwrap();
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_worker_thread_that_dies_without_cleaning_up_takes_the_group_with_it() {
    become_subreaper();
    let (tx, rx) = std::sync::mpsc::channel();
    // As if the worker were killed: the guard is never dropped, kill_all never called.
    let worker = std::thread::spawn(move || {
        let (g, grandchild) = simulator_with_a_child("");
        tx.send((g.id(), grandchild)).unwrap();
        std::mem::forget(g);
    });
    worker.join().unwrap();
    let (leader, grandchild) = rx.recv().unwrap();
    assert_grandchild_gone(grandchild);
    // The leader was our child; reap it the same way.
    assert_grandchild_gone(leader as i32);
}

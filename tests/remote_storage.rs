//! A remote task's storage is private: two tasks running at once on two worker threads of one
//! process get two different directories (each sees only its own file), the task is told its
//! storage as its working directory, and both directories are gone once the tasks have ended.
//! The same body runs on every machine; a process machine's workers are this program started
//! again (`harness = false`).

mod common;

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use common::On;
use cos::{EnvironmentSpec, Registry, RemoteFn, Spawn};

/// How many tasks have arrived at the meeting point.
static MET: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// Waits (bounded) until `n` tasks of this process are at the meeting point: they run at once.
fn meet(n: usize) {
    let mut met = MET.0.lock().unwrap();
    *met += 1;
    MET.1.notify_all();
    while *met < n {
        let (m, t) = MET.1.wait_timeout(met, Duration::from_secs(30)).unwrap();
        assert!(!t.timed_out(), "the other task never ran alongside");
        met = m;
    }
}

/// Writes a file named after the task into its storage, meets the other task when asked, and
/// returns the storage, the working directory and what the storage holds.
/// A task's storage, its working directory and the names in its storage.
type Seen = (PathBuf, Option<PathBuf>, Vec<String>);

static USE_STORAGE: RemoteFn<(u32, usize), Seen> = RemoteFn::new("use_storage", |(n, together)| {
    let dir = cos::task_storage().expect("the task has storage");
    std::fs::write(dir.join(format!("task-{n}")), "netlist").unwrap();
    if together > 1 {
        meet(together);
    }
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    (dir, cos::task_working_dir(), names)
});

fn registry() -> Registry {
    Registry::new().with(&USE_STORAGE)
}

fn storage_is_private(on: On) {
    *MET.0.lock().unwrap() = 0;
    on.set_with(registry(), 1, 2, EnvironmentSpec::new().local_storage(true));
    // Thread workers share this process: the two tasks meet, so they run at the same time.
    let together = if on == On::Thread { 2 } else { 1 };
    let a = Spawn::new(&USE_STORAGE, (1, together)).start().unwrap().task;
    let b = Spawn::new(&USE_STORAGE, (2, together)).start().unwrap().task;
    let (dir_a, wd_a, in_a) = cos::join(a).unwrap();
    let (dir_b, wd_b, in_b) = cos::join(b).unwrap();
    assert_ne!(dir_a, dir_b, "two tasks, two directories");
    assert_eq!(in_a, vec!["task-1"]);
    assert_eq!(in_b, vec!["task-2"]);
    assert_eq!(wd_a.as_ref(), Some(&dir_a), "the task works in its storage");
    assert_eq!(wd_b.as_ref(), Some(&dir_b));
    assert!(dir_a.starts_with(cos::local_storage_root()), "{}", dir_a.display());
    assert!(!dir_a.exists() && !dir_b.exists(), "the storage is removed after the task");
    cos::finalize();
}

fn main() {
    let (local, _) = common::private_storage("remote-storage");
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("sim", || storage_is_private(On::Sim)),
        ("thread", || storage_is_private(On::Thread)),
        ("process", || storage_is_private(On::Process)),
    ];
    common::run_checks(checks);
    let _ = std::fs::remove_dir_all(local.parent().unwrap_or(&local));
}

//! Persistent storage on every machine: the tasks of one worker reuse one directory, mirrored
//! by the first task only (what a task leaves there is seen by the next); it is kept after the
//! machine ends, and a machine made later gets its own. The same body runs on every machine; a
//! process machine's workers are this program started again (`harness = false`).

mod common;

use std::path::PathBuf;

use common::On;
use cos::{EnvironmentSpec, MirrorEntry, Registry, RemoteFn};

/// Counts its runs in a file of the storage; returns the storage, the count, and whether the
/// mirrored file is there.
static COUNT: RemoteFn<(), (PathBuf, u32, bool)> = RemoteFn::new("count", |()| {
    let dir = cos::task_storage().expect("the task has storage");
    let file = dir.join("runs");
    let runs = std::fs::read_to_string(&file).map_or(0, |s| s.parse().unwrap()) + 1;
    std::fs::write(&file, runs.to_string()).unwrap();
    (dir.clone(), runs, dir.join("models.lib").is_file())
});

fn registry() -> Registry {
    Registry::new().with(&COUNT)
}

fn reused_between_tasks_of_a_worker(on: On) {
    let (_, share) = common::private_storage("remote-persistent");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("models.lib"), "* models\n").unwrap();
    let spec = || {
        EnvironmentSpec::new()
            .persistent(true)
            .mirror(MirrorEntry::new(share.join("models.lib"), "").unwrap())
    };
    // One worker: every task runs on it, one after the other.
    on.set_with(registry(), 1, 1, spec());
    let mut dirs = Vec::new();
    for expected in 1..=3 {
        let (dir, runs, mirrored) = cos::dispatch_single(cos::job(&COUNT, ())).unwrap();
        assert_eq!(runs, expected, "the next task sees what the last one left");
        assert!(mirrored, "the mirrored file is there for every task");
        dirs.push(dir);
    }
    assert!(dirs.windows(2).all(|w| w[0] == w[1]), "{dirs:?}");
    cos::finalize();
    assert!(dirs[0].is_dir(), "persistent storage is kept after the machine");
    // A machine made later is another machine: storage of its own.
    on.set_with(registry(), 1, 1, spec());
    let (dir, runs, _) = cos::dispatch_single(cos::job(&COUNT, ())).unwrap();
    assert_eq!(runs, 1);
    assert_ne!(dir, dirs[0]);
    cos::finalize();
    cos::clear_local_storage().unwrap();
    assert!(!dirs[0].exists() && !dir.exists());
}

fn main() {
    let (local, _) = common::private_storage("remote-persistent");
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("sim", || reused_between_tasks_of_a_worker(On::Sim)),
        ("thread", || reused_between_tasks_of_a_worker(On::Thread)),
        ("process", || reused_between_tasks_of_a_worker(On::Process)),
    ];
    common::run_checks(checks);
    let _ = std::fs::remove_dir_all(local.parent().unwrap_or(&local));
}

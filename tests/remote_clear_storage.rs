//! Clearing local storage from the spawner (PyOPUS's `clearLocalStorage(timeout)`) on every
//! machine: the persistent directories the workers keep and what an earlier run left are
//! gone from every host; the call is refused while a remote task runs. A process machine's
//! workers are this program started again (`harness = false`).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::On;
use cos::{EnvironmentSpec, Error, MachineErrorKind, ProcessGroup, Registry, RemoteFn, Spawn};

/// The task's (persistent) storage; with `hold`, it first runs a program until cancelled.
static STORAGE: RemoteFn<bool, PathBuf> = RemoteFn::new("storage", |hold| {
    if hold {
        let _ = ProcessGroup::start(Command::new("sleep").arg("100")).unwrap().wait(None);
    }
    cos::task_storage().expect("the task has storage")
});

fn registry() -> Registry {
    Registry::new().with(&STORAGE)
}

fn every_host_is_cleared(on: On) {
    let (local, _) = common::private_storage("remote-clear-storage");
    on.set_with(registry(), 2, 1, EnvironmentSpec::new().persistent(true));
    let hosts = cos::hosts();
    assert_eq!(hosts.len(), 2);
    let kept: Vec<PathBuf> = hosts
        .iter()
        .map(|h| cos::join(Spawn::new(&STORAGE, false).host(h.clone()).start().unwrap().task).unwrap())
        .collect();
    assert_ne!(kept[0], kept[1]);
    assert!(kept.iter().all(|d| d.is_dir()), "persistent storage is kept between tasks");
    // What a killed earlier run left behind.
    let stale = cos::local_storage_root().join("1234_vm0_0_p");
    std::fs::create_dir_all(stale.join("netlists")).unwrap();
    assert!(cos::local_storage_root().starts_with(&local));

    // Refused while a task runs (on the simulated machine it runs until its end is delivered).
    let hold = on != On::Sim;
    let busy = Spawn::new(&STORAGE, hold).start().unwrap().task;
    match cos::clear_local_storage_everywhere(Duration::from_secs(60)) {
        Err(Error::Vm(e)) => assert_eq!(e.kind(), MachineErrorKind::Refused),
        other => panic!("cleared while a task runs: {other:?}"),
    }
    if hold {
        assert_eq!(cos::cancel(busy.tid()), Ok(true));
    } else {
        cos::join(busy).unwrap();
    }
    assert!(kept.iter().all(|d| d.is_dir()) && stale.is_dir(), "nothing was removed");

    cos::clear_local_storage_everywhere(Duration::from_secs(60)).unwrap();
    assert!(!stale.exists());
    assert!(kept.iter().all(|d| !d.exists()), "{kept:?}");
    let left: Vec<_> = std::fs::read_dir(cos::local_storage_root()).map_or(Vec::new(), |d| d.collect());
    assert!(left.is_empty(), "{left:?}");
    // The workers serve on, with their persistent storage made afresh.
    let again = cos::join(Spawn::new(&STORAGE, false).start().unwrap().task).unwrap();
    assert!(again.is_dir());
    cos::finalize();
    cos::clear_local_storage().unwrap();
}

fn main() {
    let (local, _) = common::private_storage("remote-clear-storage");
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("sim", || every_host_is_cleared(On::Sim)),
        ("thread", || every_host_is_cleared(On::Thread)),
        ("process", || every_host_is_cleared(On::Process)),
    ];
    common::run_checks(checks);
    let _ = std::fs::remove_dir_all(local.parent().unwrap_or(&local));
}

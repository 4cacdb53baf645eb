//! Persistent storage (PyOPUS's `persistentStorage`): one directory per process, machine and
//! worker slot, kept between tasks, mirrored only for the first; a stale one from an earlier run
//! with the same pid is removed on first use.

use std::path::PathBuf;

use cos::{EnvironmentSpec, MirrorEntry, WorkerIdentity};

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("cos-persistent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

#[test]
fn the_storage_is_kept_and_mirrored_once() {
    let tmp = tmp("kept");
    let share = tmp.join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("model.lib"), "v1").unwrap();
    let spec = EnvironmentSpec::new()
        .mirror(MirrorEntry::new_in(share.join("model.lib"), "", &[&share]).unwrap())
        .persistent(true);
    let worker = WorkerIdentity { machine: 11, slot: 0 };
    let first = cos::prepare_in(&spec, worker, &tmp, &[&share]).unwrap();
    let dir = first.storage().unwrap().to_path_buf();
    assert!(first.is_persistent());
    assert_eq!(std::fs::read_to_string(dir.join("model.lib")).unwrap(), "v1");
    std::fs::write(dir.join("state"), "from task 1").unwrap();
    cos::cleanup(first).unwrap();
    assert!(dir.is_dir());
    // The next task of the worker: same directory, its files kept, no copy made again.
    std::fs::write(share.join("model.lib"), "v2").unwrap();
    let second = cos::prepare_in(&spec, worker, &tmp, &[&share]).unwrap();
    assert_eq!(second.storage(), Some(dir.as_path()));
    assert_eq!(std::fs::read_to_string(dir.join("state")).unwrap(), "from task 1");
    assert_eq!(std::fs::read_to_string(dir.join("model.lib")).unwrap(), "v1");
    drop(second);
    // Another slot, or another machine, has its own.
    let other = cos::prepare_in(&spec, WorkerIdentity { machine: 11, slot: 1 }, &tmp, &[&share]).unwrap();
    assert_ne!(other.storage(), Some(dir.as_path()));
    assert_eq!(std::fs::read_to_string(other.storage().unwrap().join("model.lib")).unwrap(), "v2");
    let machine = cos::prepare_in(&spec, WorkerIdentity { machine: 12, slot: 0 }, &tmp, &[&share]).unwrap();
    assert_ne!(machine.storage(), Some(dir.as_path()));
    drop((other, machine));
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_stale_directory_of_an_earlier_run_with_this_pid_is_replaced() {
    let tmp = tmp("stale");
    let share = tmp.join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("a.cir"), "fresh").unwrap();
    let spec = EnvironmentSpec::new()
        .mirror(MirrorEntry::new_in(share.join("a.cir"), "", &[&share]).unwrap())
        .persistent(true);
    let worker = WorkerIdentity { machine: 21, slot: 3 };
    // What an earlier process with this pid left: the directory PyOPUS's naming gives it.
    let root = cos::prepare_in(&EnvironmentSpec::new().local_storage(true), worker, &tmp, &[&share])
        .unwrap()
        .storage()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let stale = root.join(format!("{:x}_vm{:x}_{:x}_p", std::process::id(), 21, 3));
    std::fs::create_dir_all(stale.join("old")).unwrap();
    std::fs::write(stale.join("a.cir"), "stale").unwrap();
    let env = cos::prepare_in(&spec, worker, &tmp, &[&share]).unwrap();
    assert_eq!(env.storage(), Some(stale.as_path()));
    assert_eq!(std::fs::read_to_string(stale.join("a.cir")).unwrap(), "fresh");
    assert!(!stale.join("old").exists());
    drop(env);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_failed_first_mirror_leaves_nothing_and_is_retried() {
    let tmp = tmp("retry");
    let share = tmp.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let spec = EnvironmentSpec::new()
        .mirror(MirrorEntry::new_in(share.join("late.cir"), "", &[&share]).unwrap())
        .persistent(true);
    let worker = WorkerIdentity { machine: 31, slot: 0 };
    let err = cos::prepare_in(&spec, worker, &tmp, &[&share]).unwrap_err();
    assert_eq!(err.kind, cos::StorageErrorKind::SourceMissing);
    let root = std::fs::read_dir(&tmp).unwrap().flatten().find(|e| e.file_name() != "share").unwrap().path();
    assert_eq!(std::fs::read_dir(root).unwrap().count(), 0, "the half-made directory is gone");
    std::fs::write(share.join("late.cir"), "now").unwrap();
    let env = cos::prepare_in(&spec, worker, &tmp, &[&share]).unwrap();
    assert_eq!(std::fs::read_to_string(env.storage().unwrap().join("late.cir")).unwrap(), "now");
    drop(env);
    std::fs::remove_dir_all(&tmp).unwrap();
}

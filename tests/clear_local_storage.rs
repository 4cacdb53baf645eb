//! Clearing local storage (PyOPUS's `localStorageCleaner`): everything under
//! `<local storage>/cos-<user>` goes, persistent directories included, nothing outside it.

use cos::{EnvironmentSpec, WorkerIdentity};

#[test]
fn everything_under_the_users_root_is_removed() {
    let tmp = std::env::temp_dir().join(format!("cos-clear-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let outside = tmp.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep"), "x").unwrap();
    let none: &[&str] = &[];
    let worker = WorkerIdentity { machine: 41, slot: 0 };
    let kept = cos::prepare_in(&EnvironmentSpec::new().persistent(true), worker, &tmp, none).unwrap();
    let persistent = kept.storage().unwrap().to_path_buf();
    drop(kept);
    let running = cos::prepare_in(&EnvironmentSpec::new().local_storage(true), worker, &tmp, none).unwrap();
    let root = persistent.parent().unwrap().to_path_buf();
    std::fs::write(root.join("stray-file"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("stray-link")).unwrap();
    std::mem::forget(running); // a crashed worker's directory
    cos::clear_local_storage_in(&tmp).unwrap();
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    assert!(outside.join("keep").is_file());
    // The persistent directory is made (and mirrored) afresh afterwards.
    let again = cos::prepare_in(&EnvironmentSpec::new().persistent(true), worker, &tmp, none).unwrap();
    assert_eq!(again.storage(), Some(persistent.as_path()));
    assert!(persistent.is_dir());
    drop(again);
    // Nothing there is not an error.
    std::fs::remove_dir_all(&tmp).unwrap();
    cos::clear_local_storage_in(&tmp).unwrap();
}

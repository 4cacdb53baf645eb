//! Per-task local storage: a private directory under `<local storage>/cos-<user>/`, distinct for
//! tasks on many threads of one process, told to the task as a path, removed after the task
//! (also when it panics) unless it is persistent.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use cos::{EnvironmentSpec, TaskEnvironment, WorkerIdentity};

fn base(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("cos-task-storage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

const NO_SHARE: &[&str] = &[];

fn prepare(spec: &EnvironmentSpec, slot: usize, base: &Path) -> TaskEnvironment {
    cos::prepare_in(spec, WorkerIdentity { machine: 1, slot }, base, NO_SHARE).unwrap()
}

#[test]
fn tasks_on_two_threads_of_one_process_get_two_directories() {
    let base = base("threads");
    let spec = EnvironmentSpec::new().local_storage(true);
    // Both on the same slot too, the worst case; started together.
    for slots in [(0, 1), (0, 0)] {
        let go = Arc::new(Barrier::new(2));
        let make = |slot: usize| {
            let (go, spec, base) = (Arc::clone(&go), spec.clone(), base.clone());
            std::thread::spawn(move || {
                go.wait();
                let env = prepare(&spec, slot, &base);
                let dir = env.storage().unwrap().to_path_buf();
                std::fs::write(dir.join("netlist.cir"), format!("slot {slot}")).unwrap();
                (env, dir)
            })
        };
        let (a, b) = (make(slots.0), make(slots.1));
        let (ea, da) = a.join().unwrap();
        let (eb, db) = b.join().unwrap();
        assert_ne!(da, db);
        assert!(da.is_dir() && db.is_dir());
        assert_eq!(std::fs::read_to_string(da.join("netlist.cir")).unwrap(), format!("slot {}", slots.0));
        drop((ea, eb));
    }
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn many_threads_at_once_never_share_a_directory() {
    let base = base("many");
    let spec = EnvironmentSpec::new().local_storage(true);
    let go = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (go, spec, base) = (Arc::clone(&go), spec.clone(), base.clone());
            std::thread::spawn(move || {
                go.wait();
                (0..20).map(|_| prepare(&spec, i % 2, &base)).collect::<Vec<_>>()
            })
        })
        .collect();
    let envs: Vec<TaskEnvironment> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let mut dirs: Vec<_> = envs.iter().map(|e| e.storage().unwrap().to_path_buf()).collect();
    dirs.sort();
    dirs.dedup();
    assert_eq!(dirs.len(), 320);
    drop(envs);
    // All removed again.
    let root = std::fs::read_dir(&base).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read_dir(root).unwrap().count(), 0);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn the_directory_is_under_cos_user_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = base("where");
    let env = prepare(&EnvironmentSpec::new().local_storage(true), 0, &base);
    let dir = env.storage().unwrap();
    let root = dir.parent().unwrap();
    assert_eq!(root.parent().unwrap(), base);
    assert!(root.file_name().unwrap().to_str().unwrap().starts_with("cos-"));
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(&format!("{:x}_vm1_0_", std::process::id())), "{name}");
    for d in [dir, root] {
        assert_eq!(std::fs::metadata(d).unwrap().permissions().mode() & 0o077, 0, "{d:?}");
    }
    // The task is told it, also as its working directory.
    assert_eq!(env.working_dir(), Some(dir));
    {
        let _in = env.enter();
        assert_eq!(cos::task_storage().as_deref(), Some(dir));
        assert_eq!(cos::task_working_dir().as_deref(), Some(dir));
    }
    assert_eq!(cos::task_storage(), None);
    drop(env);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn the_directory_is_removed_after_the_task() {
    let base = base("removed");
    let env = prepare(&EnvironmentSpec::new().local_storage(true), 0, &base);
    let dir = env.storage().unwrap().to_path_buf();
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::write(dir.join("a/b/out.raw"), "data").unwrap();
    cos::cleanup(env).unwrap();
    assert!(!dir.exists());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn the_directory_is_removed_when_the_task_panics() {
    let base = base("panic");
    let b = base.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let task = std::thread::spawn(move || {
        let env = prepare(&EnvironmentSpec::new().local_storage(true), 0, &b);
        tx.send(env.storage().unwrap().to_path_buf()).unwrap();
        panic!("evaluation failed");
    });
    assert!(task.join().is_err());
    let dir = rx.recv().unwrap();
    assert!(!dir.exists());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_task_that_asks_for_nothing_gets_no_directory() {
    let base = base("nothing");
    let env = prepare(&EnvironmentSpec::new(), 0, &base);
    assert_eq!(env.storage(), None);
    assert_eq!(env.working_dir(), None);
    assert!(!base.exists());
}

#[test]
fn a_symlink_inside_the_storage_is_removed_not_followed() {
    let base = base("rmlink");
    let outside = base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep"), "x").unwrap();
    let env = prepare(&EnvironmentSpec::new().local_storage(true), 0, &base);
    std::os::unix::fs::symlink(&outside, env.storage().unwrap().join("link")).unwrap();
    cos::cleanup(env).unwrap();
    assert!(outside.join("keep").is_file());
    std::fs::remove_dir_all(&base).unwrap();
}

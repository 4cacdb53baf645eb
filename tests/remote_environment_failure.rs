//! A task whose environment cannot be prepared on its worker (here: a mirrored file that is
//! missing on the share when the task starts) fails with `RemoteErrorKind::Environment`,
//! naming its task and host; its function does not run, the worker is not lost, and the next
//! task runs once the file is back. On every machine; a process machine's workers are this
//! program started again (`harness = false`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::On;
use cos::{EnvironmentSpec, Error, MirrorEntry, Registry, RemoteErrorKind, RemoteFn};

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Whether the mirrored file arrived.
static RUN: RemoteFn<(), bool> = RemoteFn::new("run", |()| {
    RUNS.fetch_add(1, Ordering::SeqCst);
    cos::task_storage().is_some_and(|d| d.join("models.lib").is_file())
});

fn registry() -> Registry {
    Registry::new().with(&RUN)
}

fn a_missing_source_fails_the_task_not_the_worker(on: On) {
    let (_, share) = common::private_storage("remote-environment-failure");
    std::fs::create_dir_all(&share).unwrap();
    let file = share.join("models.lib");
    std::fs::write(&file, "* models\n").unwrap();
    let spec = EnvironmentSpec::new().mirror(MirrorEntry::new(&file, "").unwrap());
    on.set_with(registry(), 1, 1, spec);
    std::fs::remove_file(&file).unwrap();
    RUNS.store(0, Ordering::SeqCst);
    let spawned = cos::Spawn::new(&RUN, ()).start().unwrap();
    let (task_id, host) = (spawned.task_id, spawned.host.clone());
    match cos::join(spawned.task) {
        Err(Error::Remote(e)) => {
            assert_eq!(e.kind, RemoteErrorKind::Environment);
            assert_eq!(e.task, task_id);
            assert!(e.host.is_some());
            assert_eq!(e.host, host);
        }
        other => panic!("{other:?}"),
    }
    if on != On::Process {
        assert_eq!(RUNS.load(Ordering::SeqCst), 0, "the function did not run");
    }
    std::fs::write(&file, "* models\n").unwrap();
    assert_eq!(cos::dispatch_single(cos::job(&RUN, ())), Ok(true));
    cos::finalize();
}

fn main() {
    let (local, _) = common::private_storage("remote-environment-failure");
    cos::start(registry()).expect("start"); // a worker never returns from here
    cos::finalize();
    let checks: &[(&str, fn())] = &[
        ("sim", || a_missing_source_fails_the_task_not_the_worker(On::Sim)),
        ("thread", || a_missing_source_fails_the_task_not_the_worker(On::Thread)),
        ("process", || a_missing_source_fails_the_task_not_the_worker(On::Process)),
    ];
    common::run_checks(checks);
    let _ = std::fs::remove_dir_all(local.parent().unwrap_or(&local));
}

//! A remote function that panics ends its task with `Error::Remote` at the join (PyOPUS drops
//! the failure flag, and its MPI worker dies); the worker and its slot serve the next jobs.

mod common;

use common::remote_failure;
use cos::{Error, MachineErrorKind, Registry, RemoteErrorKind, RemoteFn, SimVm, Spawn, ThreadVm};

static BOOM: RemoteFn<u32, u32> = RemoteFn::new("boom", |x| panic!("boom {x}"));
static DOUBLE: RemoteFn<u32, u32> = RemoteFn::new("double", |x| 2 * x);
/// Panics for odd arguments.
static EVEN_ONLY: RemoteFn<u32, u32> = RemoteFn::new("even_only", |x| {
    assert!(x % 2 == 0, "odd {x}");
    x / 2
});

fn registry() -> Registry {
    Registry::new().with(&BOOM).with(&DOUBLE).with(&EVEN_ONLY)
}

/// Whether `r` is the failure of a panic with `message`.
fn panicked<T>(r: &Result<T, Error>, message: &str) -> bool {
    remote_failure(r) == Some((RemoteErrorKind::Panicked, message))
}

/// The checks shared by the machines, which have `workers` worker slots.
/// `settled`: whether the slots' state after a spawn is known (on SimVm a task cannot end before
/// the spawner waits; on ThreadVm it may end at once).
fn failures_leave_the_slots_usable(workers: usize, settled: bool) {
    assert_eq!(cos::free_slots(), Some(workers));

    let s = Spawn::new(&BOOM, 1).start().unwrap();
    assert!(s.task_id.is_some(), "it ran remotely");
    let r = cos::join(s.task);
    assert!(panicked(&r, "boom 1"), "{r:?}");
    // The failure says where it happened.
    match r {
        Err(Error::Remote(e)) => {
            assert_eq!(e.task, s.task_id);
            assert_eq!(e.host, s.host);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cos::free_slots(), Some(workers));
    assert_eq!(cos::remote_task_count(), 0);

    // Every slot fails once, then every slot works again.
    let failing: Vec<_> = (0..workers as u32).map(|i| Spawn::new(&BOOM, i).start().unwrap()).collect();
    if settled {
        assert_eq!(cos::free_slots(), Some(0));
    }
    for (i, s) in failing.into_iter().enumerate() {
        assert!(panicked(&cos::join(s.task), &format!("boom {i}")));
    }
    assert_eq!(cos::free_slots(), Some(workers));
    let results = cos::dispatch((0..20).map(|i| cos::job(&DOUBLE, i))).unwrap();
    assert_eq!(results, (0..20).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    assert_eq!(cos::free_slots(), Some(workers));

    // In a dispatch, a failing job is its own entry; the others succeed.
    let results = cos::dispatch((0..12).map(|i| cos::job(&EVEN_ONLY, i))).unwrap();
    for (i, r) in results.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(*r, Ok(i as u32 / 2));
        } else {
            assert!(panicked(r, &format!("odd {i}")), "{r:?}");
        }
    }
    assert_eq!(cos::free_slots(), Some(workers));

    // A failure frees the slot for spawns that wait for it.
    let running: Vec<_> = (0..workers as u32).map(|i| Spawn::new(&BOOM, i).start().unwrap()).collect();
    let waiting = Spawn::new(&DOUBLE, 50).block(false).start().unwrap();
    if settled {
        assert_eq!(waiting.task_id, None);
    }
    assert_eq!(cos::join(waiting.task).unwrap(), 100);
    for s in running {
        assert!(matches!(cos::join(s.task), Err(Error::Remote(_))));
    }
    assert_eq!(cos::free_slots(), Some(workers));
    assert_eq!(cos::remote_task_count(), 0);
}

machine_test!(remote_panic_is_an_error_and_the_slot_is_reused, [sim, thread], |on| {
    on.set(registry(), 1, 2);
    failures_leave_the_slots_usable(2, on.settled());
});

#[test]
fn sim_vm_remote_panic_is_an_error_with_another_seed() {
    cos::set_vm(SimVm::new(registry(), 2, 1).seed(3)).unwrap();
    failures_leave_the_slots_usable(2, true);
    cos::finalize();
}

#[test]
fn thread_vm_single_worker_survives_repeated_panics() {
    cos::set_vm(ThreadVm::builder(registry()).hosts(1).slots_per_host(1).build()).unwrap();
    for i in 0..5 {
        let s = Spawn::new(&BOOM, i).start().unwrap();
        assert_eq!(s.task_id.map(|t| t.worker), Some(1));
        assert!(panicked(&cos::join(s.task), &format!("boom {i}")));
        let ok = Spawn::new(&DOUBLE, i).start().unwrap();
        assert_eq!(ok.task_id.map(|t| t.worker), Some(1));
        assert_eq!(cos::join(ok.task), Ok(2 * i));
    }
    cos::finalize();
}

#[test]
fn local_fallback_panic_is_a_local_panic_error() {
    // Without a machine the same function runs as a local task; its panic is Error::Panicked.
    let s = Spawn::new(&BOOM, 9).start().unwrap();
    assert_eq!(s.task_id, None);
    match cos::join(s.task) {
        Err(Error::Panicked { tid, message }) => {
            assert_eq!(tid, s.task.tid());
            assert_eq!(message, "boom 9");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, 2)), Ok(4));
}

#[test]
fn finalizing_the_machine_ends_its_remote_tasks_and_waiting_spawns_with_an_error() {
    // SimVm: the tasks are done at once but their ends lie in the virtual future.
    cos::set_vm(SimVm::new(registry(), 1, 1)).unwrap();
    let running = Spawn::new(&DOUBLE, 1).start().unwrap();
    let waiting = Spawn::new(&DOUBLE, 2).block(false).start().unwrap();
    assert_eq!(waiting.task_id, None, "no free slot: it waits in the queue");
    cos::finalize();
    let finalized =
        |r: Result<u32, Error>| matches!(r, Err(Error::Vm(e)) if e.kind() == MachineErrorKind::Finalized);
    assert!(finalized(cos::join(running.task)));
    assert!(finalized(cos::join(waiting.task)));
    assert_eq!(cos::remote_task_count(), 0);
    assert_eq!(cos::task_count(), 1);
}

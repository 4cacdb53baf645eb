//! A blocked call that can never return ends with `Error::Deadlock` naming who waits on whom,
//! and the main program goes on afterwards. (PyOPUS spins forever in this case.)
//!
//! Local spawns and joins alone cannot deadlock (a child never waits on its parent), so the
//! tests block on a free slot of a host that does not exist, on a simulated machine with one
//! host of one slot.

use cos::{DeadlockReport, Error, HostId, Registry, RemoteFn, SimVm, Spawn, Tid, WaitReason};

static TWICE: RemoteFn<u32, u32> = RemoteFn::new("twice", |x| 2 * x);

/// Runs `f` on a new thread, so that it has a cooperative OS of its own.
fn fresh<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// One host ("host0") of one slot.
fn machine() {
    assert_eq!(cos::set_vm(SimVm::new(Registry::new().with(&TWICE), 1, 1)), Ok(true));
    assert_eq!(cos::slots(), Some(2));
    assert_eq!(cos::free_slots(), Some(1));
}

fn nowhere() -> HostId {
    HostId::new("nowhere")
}

fn slot_nowhere() -> WaitReason {
    WaitReason::Slot(Some("nowhere".into()))
}

/// A blocking remote spawn on a host that does not exist.
fn spawn_nowhere(x: u32) -> Result<u32, Error> {
    let s = Spawn::new(&TWICE, x).host(nowhere()).start()?;
    cos::join(s.task)
}

#[test]
fn a_join_on_a_task_that_waits_for_a_missing_host_is_a_deadlock() {
    fresh(|| {
        machine();
        let t = cos::spawn(|| spawn_nowhere(1)).unwrap();
        let err = cos::join(t).unwrap_err();
        let report = DeadlockReport {
            waiting: vec![(Tid::MAIN, WaitReason::Join(vec![t.tid()])), (t.tid(), slot_nowhere())],
        };
        assert_eq!(err, Error::Deadlock(report));
        assert_eq!(err.to_string(), "deadlock: task 1 joins 2; task 2 waits for a free slot on host nowhere");
        // The blocked task stays blocked; no remote task was started.
        assert_eq!(cos::task_count(), 2);
        assert_eq!(cos::remote_task_count(), 0);
        assert_eq!(cos::free_slots(), Some(1));
        cos::finalize();
    });
}

#[test]
fn the_main_program_goes_on_after_a_deadlock() {
    fresh(|| {
        machine();
        let stuck = cos::spawn(|| spawn_nowhere(1)).unwrap();
        assert!(matches!(cos::join(stuck), Err(Error::Deadlock(_))));

        // Local tasks spawn and join as usual.
        let t = cos::spawn(|| {
            cos::yield_now();
            40 + 2
        })
        .unwrap();
        assert!(t.tid() > stuck.tid());
        assert_eq!(cos::join(t).unwrap(), 42);
        let nested = cos::spawn(|| cos::join(cos::spawn(|| 5u8).unwrap()).unwrap()).unwrap();
        assert_eq!(cos::join(nested).unwrap(), 5);

        // Remote tasks on a real host too, from main and from a task.
        assert_eq!(cos::dispatch_single(cos::job(&TWICE, 10)), Ok(20));
        let r = cos::spawn(|| cos::spawn_remote(&TWICE, 7).and_then(cos::join)).unwrap();
        assert_eq!(cos::join(r).unwrap(), Ok(14));
        let s = Spawn::new(&TWICE, 3).host(HostId::new("host0")).start().unwrap();
        assert_eq!(s.host, Some(HostId::new("host0")));
        assert!(s.task_id.is_some());
        assert_eq!(cos::join(s.task).unwrap(), 6);

        // Waiting on any child, the stuck one included, is the same deadlock again.
        let err = cos::join_any().unwrap_err();
        let report = DeadlockReport {
            waiting: vec![(Tid::MAIN, WaitReason::Join(vec![])), (stuck.tid(), slot_nowhere())],
        };
        assert_eq!(err, Error::Deadlock(report));
        assert_eq!(
            err.to_string(),
            format!(
                "deadlock: task 1 joins any child; task {} waits for a free slot on host nowhere",
                stuck.tid()
            )
        );
        // A non-blocking join is no deadlock.
        assert!(cos::try_join_any().unwrap().is_none());
        cos::finalize();
    });
}

#[test]
fn a_chain_of_joins_is_reported_in_tid_order() {
    fresh(|| {
        machine();
        // main joins A, A joins B, B waits for a slot on "nowhere".
        let a = cos::spawn(|| {
            let b = cos::spawn(|| spawn_nowhere(2)).unwrap();
            cos::join(b).map(|_| b.tid())
        })
        .unwrap();
        let (a_tid, b_tid) = (a.tid(), Tid(a.tid().0 + 1));
        let err = cos::join(a).unwrap_err();
        let report = DeadlockReport {
            waiting: vec![
                (Tid::MAIN, WaitReason::Join(vec![a_tid])),
                (a_tid, WaitReason::Join(vec![b_tid])),
                (b_tid, slot_nowhere()),
            ],
        };
        assert_eq!(err, Error::Deadlock(report));
        assert_eq!(
            err.to_string(),
            "deadlock: task 1 joins 2; task 2 joins 3; task 3 waits for a free slot on host nowhere"
        );
        cos::finalize();
    });
}

#[test]
fn a_blocking_spawn_of_the_main_program_itself_is_a_deadlock() {
    fresh(|| {
        machine();
        let err = Spawn::new(&TWICE, 1).host(nowhere()).start().unwrap_err();
        assert_eq!(err, Error::Deadlock(DeadlockReport { waiting: vec![(Tid::MAIN, slot_nowhere())] }));
        // The spawn was taken out of the wait queue: nothing is left waiting.
        assert_eq!(cos::task_count(), 1);
        assert!(cos::join_any().unwrap().is_none());
        assert_eq!(cos::spawn_remote(&TWICE, 4).and_then(cos::join), Ok(8));
        cos::finalize();
    });
}

#[test]
fn a_join_listing_several_children_names_them_all() {
    fresh(|| {
        machine();
        let x = cos::spawn(|| spawn_nowhere(1)).unwrap();
        let y = cos::spawn(|| spawn_nowhere(2)).unwrap();
        let err = cos::join_list(&[y.tid(), x.tid()], true).unwrap_err();
        let report = DeadlockReport {
            waiting: vec![
                (Tid::MAIN, WaitReason::Join(vec![y.tid(), x.tid()])),
                (x.tid(), slot_nowhere()),
                (y.tid(), slot_nowhere()),
            ],
        };
        assert_eq!(err, Error::Deadlock(report));
        cos::finalize();
    });
}

#[test]
fn a_wait_that_a_remote_task_can_end_is_no_deadlock() {
    fresh(|| {
        machine();
        // Two blocking remote spawns for one slot: the second waits until the first ends.
        let a = cos::spawn(|| cos::spawn_remote(&TWICE, 1).and_then(cos::join)).unwrap();
        let b = cos::spawn(|| cos::spawn_remote(&TWICE, 2).and_then(cos::join)).unwrap();
        assert_eq!(cos::join(b).unwrap(), Ok(4));
        assert_eq!(cos::join(a).unwrap(), Ok(2));
        assert_eq!(cos::free_slots(), Some(1));
        cos::finalize();
    });
}

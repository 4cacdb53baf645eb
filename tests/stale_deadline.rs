//! A task's deadline ends with the task, however it ends: the loop never waits for the
//! deadline of a task that is gone.
//!
//! Observed on `SimVm`, whose virtual clock advances exactly as far as the loop waits: a
//! stale timer would show as a clock that jumped to it.

use std::time::{Duration, Instant};

use cos::{Error, HostId, MachineErrorKind, Registry, RemoteFn, SimVm, Spawn};

static TAKES: RemoteFn<u64, u64> = RemoteFn::new("takes", |s| s);

const HOUR: u64 = 3600;

fn sim() -> SimVm {
    SimVm::new(Registry::new().with(&TAKES), 1, 1)
        .latency(|call, _| postcard::from_bytes::<u64>(&call.args).unwrap() * 1_000_000)
}

fn now() -> Instant {
    cos::with_vm(|vm| vm.now()).expect("a machine")
}

#[test]
fn a_time_limit_of_a_task_ended_by_finalize_is_not_waited_for() {
    cos::set_vm(sim()).unwrap();
    let limited = Spawn::new(&TAKES, 5 * HOUR).time_limit(Duration::from_secs(HOUR)).start().unwrap();
    cos::finalize();
    match cos::join(limited.task) {
        Err(Error::Vm(e)) => assert_eq!(e.kind(), MachineErrorKind::Finalized),
        other => panic!("expected a finalized machine, got {other:?}"),
    }

    // A new machine; nothing runs and nothing can: the loop must see a deadlock at once,
    // not first wait out the old task's hour.
    cos::set_vm(sim()).unwrap();
    let t0 = now();
    let stuck = Spawn::new(&TAKES, 1).host(HostId::new("nowhere")).start();
    assert!(matches!(stuck, Err(Error::Deadlock(_))), "got {stuck:?}");
    assert_eq!(now() - t0, Duration::ZERO, "the loop waited for a deadline of a task that is gone");

    // A remote task still ends at its own latency.
    assert_eq!(cos::join(cos::spawn_remote(&TAKES, 2).unwrap()), Ok(2));
    assert_eq!(now() - t0, Duration::from_secs(2));
    cos::finalize();
}

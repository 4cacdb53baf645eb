//! A machine whose worker slots are all out of service is still a machine: a remote spawn waits
//! for a slot (and a blocking one that nothing can serve is a deadlock), it never runs as a
//! local task inside the spawner. Only a machine without worker slots, or no machine, runs
//! remote spawns locally (PyOPUS's rule).
//!
//! The process machine's own case (its workers cannot be started again) is a check in
//! `tests/process_vm.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use cos::{Error, Event, HostId, RemoteCall, RemoteFn, Spawn, TaskId, VirtualMachine, Wait};

/// Counts its calls in this process: a call here is a local run.
static RAN_HERE: AtomicUsize = AtomicUsize::new(0);

static COUNTED: RemoteFn<u32, u32> = RemoteFn::new("counted", |x| {
    RAN_HERE.fetch_add(1, Ordering::SeqCst);
    x + 1
});

/// A machine of `workers` slots, every one of them out of service (lost for good).
struct AllDown {
    workers: usize,
}

impl VirtualMachine for AllDown {
    fn slots(&self) -> usize {
        self.workers + 1
    }
    fn free_slots(&self) -> usize {
        0
    }
    fn hosts(&self) -> Vec<HostId> {
        vec![HostId::new("host0")]
    }
    fn hosts_with_free_slots(&self) -> Vec<HostId> {
        Vec::new()
    }
    fn host_id(&self, _task: Option<TaskId>) -> Option<HostId> {
        None
    }
    fn spawn_function(&mut self, _call: &RemoteCall, _targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        Err(Error::NoFreeSlot)
    }
    fn receive(&mut self, _wait: Wait) -> Result<Option<Event>, Error> {
        Ok(None)
    }
    fn finalize(&mut self) {}
}

#[test]
fn a_spawn_on_a_machine_with_every_slot_down_never_runs_locally() {
    assert_eq!(cos::set_vm(AllDown { workers: 2 }), Ok(true));
    RAN_HERE.store(0, Ordering::SeqCst);

    // Blocking: waits for a slot; nothing can free one, so the wait is a deadlock.
    let blocking = Spawn::new(&COUNTED, 1).start();
    assert!(matches!(blocking, Err(Error::Deadlock(_))), "got {blocking:?}");

    // Not blocking: no free slot, and it says so.
    let now = Spawn::new(&COUNTED, 2).block(false).enqueue(false).start();
    assert!(matches!(now, Err(Error::NoFreeSlot)), "got {now:?}");

    assert_eq!(RAN_HERE.load(Ordering::SeqCst), 0, "remote work ran inside the spawner");
    cos::finalize();

    // Without a machine, a remote spawn runs locally, as in PyOPUS.
    assert_eq!(cos::join(cos::spawn_remote(&COUNTED, 3).unwrap()), Ok(4));
    assert_eq!(RAN_HERE.load(Ordering::SeqCst), 1);
}

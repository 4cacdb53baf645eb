//! A machine whose worker slots are all out of service is still a machine: a remote spawn waits
//! for a slot (and a blocking one that nothing can serve is a deadlock), it never runs as a
//! local task inside the spawner. Only a machine without worker slots, or no machine, runs
//! remote spawns locally (PyOPUS's rule).
//!
//! A slot that is down for a while (its worker is being started again) is waited for: a spawn
//! waiting for a slot runs on it once it is back, still never in the spawner.
//!
//! The process machine's own case (its workers cannot be started again) is a check in
//! `tests/process_vm.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Counts its calls in this process, for the test below (the tests run side by side).
static RAN_HERE_BACK: AtomicUsize = AtomicUsize::new(0);

static COUNTED_BACK: RemoteFn<u32, u32> = RemoteFn::new("counted_back", |x| {
    RAN_HERE_BACK.fetch_add(1, Ordering::SeqCst);
    x + 1
});

/// A machine of one slot that is down until `back` (as a process machine's slot is while its
/// worker's start is backed off); each task it runs gives 100.
struct ComesBack {
    back: Instant,
    running: Option<TaskId>,
    next: u64,
}

impl VirtualMachine for ComesBack {
    fn slots(&self) -> usize {
        2
    }
    fn free_slots(&self) -> usize {
        usize::from(Instant::now() >= self.back && self.running.is_none())
    }
    fn hosts(&self) -> Vec<HostId> {
        vec![HostId::new("host0")]
    }
    fn hosts_with_free_slots(&self) -> Vec<HostId> {
        if self.free_slots() > 0 {
            self.hosts()
        } else {
            Vec::new()
        }
    }
    fn host_id(&self, _task: Option<TaskId>) -> Option<HostId> {
        Some(HostId::new("host0"))
    }
    fn slot_return(&self) -> Option<Instant> {
        (Instant::now() < self.back).then_some(self.back)
    }
    fn spawn_function(&mut self, _call: &RemoteCall, _targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        if self.free_slots() == 0 {
            return Err(Error::NoFreeSlot);
        }
        self.next += 1;
        let task = TaskId { worker: 1, number: self.next };
        self.running = Some(task);
        Ok(task)
    }
    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error> {
        if let Some(task) = self.running.take() {
            return Ok(Some(Event::Finished { task, result: Ok(postcard::to_stdvec(&100u32).unwrap()) }));
        }
        if let Wait::Until(at) = wait {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        Ok(None)
    }
    fn finalize(&mut self) {}
}

#[test]
fn a_spawn_waits_for_a_slot_that_comes_back() {
    let back = Instant::now() + Duration::from_millis(50);
    assert_eq!(cos::set_vm(ComesBack { back, running: None, next: 0 }), Ok(true));
    let s = Spawn::new(&COUNTED_BACK, 1).start().expect("the spawn waits for the slot");
    assert_eq!(s.task_id.map(|t| t.worker), Some(1), "it runs on the slot that came back");
    assert_eq!(cos::join(s.task), Ok(100));
    assert_eq!(RAN_HERE_BACK.load(Ordering::SeqCst), 0, "remote work ran inside the spawner");
    cos::finalize();
}

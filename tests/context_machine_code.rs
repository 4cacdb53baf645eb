//! Code of a machine (the closure of `with_vm`, a user's `VirtualMachine` methods, the old
//! machine's `finalize` in `set_vm`, an ignored machine's `Drop`) may call `cos`: each call
//! works or returns `Error::WrongContext(Context::Machine)`, never a panic.

use std::cell::RefCell;
use std::rc::Rc;

use cos::{
    Context, Error, Event, HostId, Registry, RemoteCall, RemoteFn, SimVm, TaskId, Tid, VirtualMachine, Wait,
};

static ONE: RemoteFn<(), u8> = RemoteFn::new("one", |()| 1);

/// What machine code saw when it called `cos`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Seen {
    tid: Option<Tid>,
    spawn_failed_with: Option<Error>,
    task_count: Option<usize>,
    join: Option<Error>,
}

type Log = Rc<RefCell<Vec<(&'static str, Seen)>>>;

fn look(log: &Log, at: &'static str) {
    let spawn_failed_with = cos::spawn(|| ()).err();
    let join = cos::join_any().err();
    cos::yield_now();
    let seen = Seen { tid: Some(cos::tid()), spawn_failed_with, task_count: Some(cos::task_count()), join };
    log.borrow_mut().push((at, seen));
}

fn expected(tasks: usize) -> Seen {
    Seen {
        tid: Some(Tid::SCHEDULER),
        spawn_failed_with: Some(Error::WrongContext(Context::Machine)),
        task_count: Some(tasks),
        join: Some(Error::WrongContext(Context::Machine)),
    }
}

/// A machine that calls `cos` from every method the scheduler uses.
struct Calling {
    inner: SimVm,
    log: Log,
}

impl VirtualMachine for Calling {
    fn slots(&self) -> usize {
        self.inner.slots()
    }
    fn free_slots(&self) -> usize {
        self.inner.free_slots()
    }
    fn hosts(&self) -> Vec<HostId> {
        self.inner.hosts()
    }
    fn hosts_with_free_slots(&self) -> Vec<HostId> {
        self.inner.hosts_with_free_slots()
    }
    fn host_id(&self, task: Option<TaskId>) -> Option<HostId> {
        self.inner.host_id(task)
    }
    fn spawn_function(&mut self, call: &RemoteCall, targets: Option<&[HostId]>) -> Result<TaskId, Error> {
        look(&self.log, "spawn_function");
        self.inner.spawn_function(call, targets)
    }
    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error> {
        look(&self.log, "receive");
        self.inner.receive(wait)
    }
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        self.inner.cancel(task)
    }
    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }
    fn finalize(&mut self) {
        look(&self.log, "finalize");
        self.inner.finalize()
    }
}

impl Drop for Calling {
    fn drop(&mut self) {
        look(&self.log, "drop");
    }
}

fn fresh<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[test]
fn the_closure_of_with_vm_may_call_cos() {
    fresh(|| {
        cos::set_vm(SimVm::new(Registry::new(), 2, 1)).unwrap();
        let log: Log = Log::default();
        let slots = cos::with_vm(|vm| {
            look(&log, "with_vm");
            vm.slots()
        });
        assert_eq!(slots, Some(3));
        assert_eq!(*log.borrow(), vec![("with_vm", expected(1))]);
        // A nested with_vm cannot lend the machine again.
        assert_eq!(cos::with_vm(|_| cos::with_vm(|vm| vm.slots())), Some(None));
        cos::finalize();
    });
}

#[test]
fn a_users_machine_may_call_cos_from_its_methods() {
    fresh(|| {
        let log: Log = Log::default();
        let vm = Calling { inner: SimVm::new(Registry::new().with(&ONE), 2, 1), log: log.clone() };
        assert_eq!(cos::set_vm(vm), Ok(true));
        let t = cos::spawn_remote(&ONE, ()).unwrap();
        assert_eq!(cos::join(t), Ok(1));
        cos::finalize();
        let log = log.borrow();
        let places: Vec<&str> = log.iter().map(|(at, _)| *at).collect();
        assert!(places.contains(&"spawn_function") && places.contains(&"receive"), "{places:?}");
        assert_eq!(places[places.len() - 2..], ["finalize", "drop"]);
        for (at, seen) in log.iter() {
            assert_eq!(seen.tid, Some(Tid::SCHEDULER), "{at}");
            assert_eq!(seen.spawn_failed_with, Some(Error::WrongContext(Context::Machine)), "{at}");
            assert_eq!(seen.join, Some(Error::WrongContext(Context::Machine)), "{at}");
        }
        // The calls above did not disturb the scheduler.
        assert_eq!(cos::task_count(), 1);
        assert_eq!(cos::join(cos::spawn(|| 5).unwrap()), Ok(5));
    });
}

#[test]
fn set_vm_runs_the_old_machines_finalize_and_an_ignored_machines_drop_as_machine_code() {
    fresh(|| {
        let old_log: Log = Log::default();
        let old = Calling { inner: SimVm::new(Registry::new(), 2, 1), log: old_log.clone() };
        assert_eq!(cos::set_vm(old), Ok(true));
        // One slot only: ignored, and dropped.
        let ignored_log: Log = Log::default();
        let ignored = Calling { inner: SimVm::new(Registry::new(), 1, 0), log: ignored_log.clone() };
        assert_eq!(cos::set_vm(ignored), Ok(false));
        assert_eq!(*ignored_log.borrow(), vec![("drop", expected(1))]);
        assert!(old_log.borrow().is_empty(), "an ignored set_vm leaves the old machine alone");
        // Replaced: the old machine is finalized and dropped.
        assert_eq!(cos::set_vm(SimVm::new(Registry::new(), 2, 1)), Ok(true));
        assert_eq!(*old_log.borrow(), vec![("finalize", expected(1)), ("drop", expected(1))]);
        cos::finalize();
    });
}

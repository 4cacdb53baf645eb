//! When a thread ends with tasks still suspended and a machine still set, the OS is torn down
//! from a thread-local destructor: the tasks are unwound and the machine finalized, and `cos`
//! calls made there get answers (`Error::WrongContext(Context::Teardown)`), never an abort.

use std::sync::{Arc, Mutex};

use cos::{Context, Error, Event, HostId, Registry, RemoteCall, SimVm, TaskId, Tid, VirtualMachine, Wait};

type Log = Arc<Mutex<Vec<String>>>;

fn record(log: &Log, at: &str) {
    let tid = cos::tid();
    let spawn = cos::spawn(|| ()).err();
    cos::yield_now();
    let count = cos::task_count();
    log.lock().unwrap().push(format!("{at}: tid {tid}, spawn {spawn:?}, tasks {count}"));
}

struct Guard(Log);

impl Drop for Guard {
    fn drop(&mut self) {
        record(&self.0, "destructor");
    }
}

#[test]
fn destructors_of_tasks_suspended_at_thread_end_may_call_cos() {
    let log: Log = Log::default();
    let l = log.clone();
    std::thread::spawn(move || {
        let l2 = l.clone();
        cos::spawn(move || {
            let _g = Guard(l2);
            loop {
                cos::yield_now();
            }
        })
        .unwrap();
        cos::yield_now();
        // The thread ends with the task suspended.
    })
    .join()
    .expect("the thread ends normally");
    let wrong = Error::WrongContext(Context::Teardown);
    assert_eq!(
        *log.lock().unwrap(),
        vec![format!("destructor: tid {}, spawn {:?}, tasks 2", Tid::SCHEDULER, Some(wrong))]
    );
}

struct Finalizing {
    inner: SimVm,
    log: Log,
}

impl VirtualMachine for Finalizing {
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
        self.inner.spawn_function(call, targets)
    }
    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error> {
        self.inner.receive(wait)
    }
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        self.inner.cancel(task)
    }
    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }
    fn finalize(&mut self) {
        record(&self.log, "finalize");
        self.inner.finalize()
    }
}

#[test]
fn a_machine_left_set_at_thread_end_is_finalized_safely() {
    let log: Log = Log::default();
    let l = log.clone();
    std::thread::spawn(move || {
        let vm = Finalizing { inner: SimVm::new(Registry::new(), 2, 1), log: l };
        assert_eq!(cos::set_vm(vm), Ok(true));
        // No cos::finalize(): the machine is finalized when the thread's OS goes.
    })
    .join()
    .expect("the thread ends normally");
    let wrong = Error::WrongContext(Context::Teardown);
    assert_eq!(
        *log.lock().unwrap(),
        vec![format!("finalize: tid {}, spawn {:?}, tasks 1", Tid::SCHEDULER, Some(wrong))]
    );
}

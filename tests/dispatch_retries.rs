//! Dispatch retries: a job whose worker was lost or which ran out of time runs again, every job
//! gives exactly one result, other failures are not retried, and a host that keeps losing its
//! jobs is taken out of service.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

mod common;

use common::remote_failure;
use cos::{
    Dispatch, Error, Event, HostId, LostCause, Registry, RemoteCall, RemoteErrorKind, RemoteFn, SimVm,
    TaskId, ThreadVm, VirtualMachine, Wait,
};

static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);
static BOOM: RemoteFn<u64, u64> = RemoteFn::new("boom", |x| panic!("job {x} fails"));

/// What the lossy machine did, for the test to check.
#[derive(Default)]
struct Faults {
    /// Tasks started, per host.
    started: HashMap<HostId, usize>,
    /// Tasks whose worker was made lost, per host.
    lost: HashMap<HostId, usize>,
}

/// A simulated machine that loses workers: every task on a host in `bad_hosts`, and the first
/// `args % 3` attempts of each call when `lose_by_args` is set. A lost task's end becomes
/// [`Event::Lost`], as a dead worker process would give.
struct LossyVm {
    inner: SimVm,
    bad_hosts: Vec<HostId>,
    lose_by_args: bool,
    attempts: HashMap<Vec<u8>, u64>,
    doomed: HashSet<TaskId>,
    host_of: HashMap<TaskId, HostId>,
    faults: Rc<RefCell<Faults>>,
}

impl LossyVm {
    fn new(inner: SimVm, bad_hosts: &[&str], lose_by_args: bool) -> (Self, Rc<RefCell<Faults>>) {
        let faults = Rc::new(RefCell::new(Faults::default()));
        let vm = LossyVm {
            inner,
            bad_hosts: bad_hosts.iter().map(|h| HostId::new(*h)).collect(),
            lose_by_args,
            attempts: HashMap::new(),
            doomed: HashSet::new(),
            host_of: HashMap::new(),
            faults: faults.clone(),
        };
        (vm, faults)
    }
}

impl VirtualMachine for LossyVm {
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
        let args = call.args.clone();
        let id = self.inner.spawn_function(call, targets)?;
        let attempt = self.attempts.entry(args.clone()).or_insert(0);
        let lose_first = if self.lose_by_args { postcard::from_bytes::<u64>(&args).unwrap() % 3 } else { 0 };
        let by_args = *attempt < lose_first;
        *attempt += 1;
        let host = self.inner.host_id(Some(id)).unwrap();
        *self.faults.borrow_mut().started.entry(host.clone()).or_insert(0) += 1;
        if by_args || self.bad_hosts.contains(&host) {
            self.doomed.insert(id);
        }
        self.host_of.insert(id, host);
        Ok(id)
    }
    fn receive(&mut self, wait: Wait) -> Result<Option<Event>, Error> {
        match self.inner.receive(wait)? {
            Some(e) if self.doomed.remove(&e.task()) => {
                let host = self.host_of.remove(&e.task()).unwrap();
                *self.faults.borrow_mut().lost.entry(host).or_insert(0) += 1;
                Ok(Some(Event::Lost {
                    task: e.task(),
                    cause: LostCause::Other("worker process died".into()),
                }))
            }
            other => Ok(other),
        }
    }
    fn now(&self) -> std::time::Instant {
        self.inner.now()
    }
    fn finalize(&mut self) {
        self.inner.finalize()
    }
    fn cancel(&mut self, task: TaskId) -> Result<(), Error> {
        self.inner.cancel(task)
    }
}

fn registry() -> Registry {
    Registry::new().with(&DOUBLE).with(&BOOM)
}

fn total(m: &HashMap<HostId, usize>) -> usize {
    m.values().sum()
}

#[test]
fn lost_jobs_run_again_and_every_job_gives_exactly_one_result() {
    let (vm, faults) = LossyVm::new(SimVm::new(registry(), 3, 2), &[], true);
    cos::set_vm(vm).unwrap();
    const N: u64 = 300;
    let mut seen = vec![0u32; N as usize];
    let results = Dispatch::new((0..N).map(|i| cos::job(&DOUBLE, i)))
        .retries(2)
        .collector(|c| {
            seen[c.index] += 1;
            ControlFlow::Continue(())
        })
        .build_result_list(true)
        .run()
        .unwrap();
    cos::finalize();
    assert!(seen.iter().all(|&n| n == 1), "one result per job");
    assert_eq!(results, (0..N).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    // Jobs i lose i % 3 workers: 100 jobs once, 100 twice.
    let f = faults.borrow();
    assert_eq!(total(&f.lost), 300);
    assert_eq!(total(&f.started), 600);
}

#[test]
fn the_last_attempt_s_failure_is_the_result() {
    let (vm, faults) = LossyVm::new(SimVm::new(registry(), 2, 2), &[], true);
    cos::set_vm(vm).unwrap();
    let results = Dispatch::new((0..30u64).map(|i| cos::job(&DOUBLE, i)))
        .retries(1)
        .host_failure_limit(u32::MAX)
        .run()
        .unwrap();
    cos::finalize();
    assert_eq!(results.len(), 30);
    for (i, r) in results.iter().enumerate() {
        if i % 3 == 2 {
            assert!(matches!(r, Err(Error::WorkerLost(_))), "job {i}: {r:?}");
        } else {
            assert_eq!(*r, Ok(2 * i as u64));
        }
    }
    // 10 jobs lost once and recovered, 10 lost twice.
    assert_eq!(total(&faults.borrow().lost), 30);
}

#[test]
fn without_retries_a_lost_job_is_its_failure() {
    let (vm, faults) = LossyVm::new(SimVm::new(registry(), 2, 1), &[], true);
    cos::set_vm(vm).unwrap();
    let results = cos::dispatch((0..6u64).map(|i| cos::job(&DOUBLE, i))).unwrap();
    cos::finalize();
    let lost = results.iter().filter(|r| matches!(r, Err(Error::WorkerLost(_)))).count();
    assert_eq!(lost, 4);
    assert_eq!(total(&faults.borrow().started), 6);
}

#[test]
fn other_failures_are_not_retried() {
    let (vm, faults) = LossyVm::new(SimVm::new(registry(), 2, 2), &[], false);
    cos::set_vm(vm).unwrap();
    let results = Dispatch::new((0..5u64).map(|i| cos::job(&BOOM, i))).retries(3).run().unwrap();
    cos::finalize();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(remote_failure(r), Some((RemoteErrorKind::Panicked, format!("job {i} fails").as_str())));
    }
    assert_eq!(total(&faults.borrow().started), 5, "each job ran once");
}

#[test]
fn a_host_that_keeps_losing_jobs_is_taken_out_of_service() {
    // host1 loses every task. Besides the 3 that take it out of service, only jobs started there
    // before dispatch saw the third loss are lost (6 in all on this seeded machine: retries go to
    // the other hosts, so host1 takes new jobs while its losses are counted).
    let (vm, faults) = LossyVm::new(SimVm::new(registry(), 3, 2), &["host1"], false);
    cos::set_vm(vm).unwrap();
    const N: u64 = 200;
    let mut hosts = HashMap::new();
    let results = Dispatch::new((0..N).map(|i| cos::job(&DOUBLE, i)))
        .retries(2)
        .host_failure_limit(3)
        .collector(|c| {
            *hosts.entry(c.host.cloned()).or_insert(0) += 1;
            ControlFlow::Continue(())
        })
        .build_result_list(true)
        .run()
        .unwrap();
    cos::finalize();
    assert_eq!(results, (0..N).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    let f = faults.borrow();
    let lost = total(&f.lost);
    assert_eq!(lost, 6, "tasks lost on host1");
    assert_eq!(f.lost.get(&HostId::new("host1")), Some(&lost));
    assert_eq!(hosts.get(&Some(HostId::new("host1"))), None, "no result came from host1");
    assert_eq!(total(&f.started), N as usize + lost);
}

#[test]
fn without_a_limit_a_bad_host_fails_jobs_over_and_over() {
    // The same machine, the host never taken out of service: its jobs keep failing there.
    let (vm, faults) = LossyVm::new(SimVm::new(registry(), 3, 2), &["host1"], false);
    cos::set_vm(vm).unwrap();
    let results = Dispatch::new((0..200u64).map(|i| cos::job(&DOUBLE, i)))
        .retries(2)
        .host_failure_limit(u32::MAX)
        .run()
        .unwrap();
    cos::finalize();
    assert!(total(&faults.borrow().lost) > 20);
    assert_eq!(results.len(), 200);
}

#[test]
fn a_job_pinned_to_a_bad_host_stays_there() {
    let (vm, faults) = LossyVm::new(SimVm::new(registry(), 2, 1), &["host0"], false);
    cos::set_vm(vm).unwrap();
    let results = Dispatch::new((0..4u64).map(|i| cos::job(&DOUBLE, i).host(HostId::new("host0"))))
        .retries(1)
        .host_failure_limit(1)
        .run()
        .unwrap();
    cos::finalize();
    assert!(results.iter().all(|r| matches!(r, Err(Error::WorkerLost(_)))));
    assert_eq!(faults.borrow().started.get(&HostId::new("host1")), None);
}

/// The first call with each argument waits until the gate opens (after its time limit passed);
/// later calls return at once.
static STUCK_ONCE: RemoteFn<u64, u64> = RemoteFn::new("stuck_once", |x| {
    let first = SEEN.lock().unwrap().get_or_insert_with(HashSet::new).insert(x);
    if first {
        let mut open = GATE.lock().unwrap();
        while !*open {
            open = GATE_CV.wait(open).unwrap();
        }
    }
    x + 1
});
static SEEN: Mutex<Option<HashSet<u64>>> = Mutex::new(None);
static GATE: Mutex<bool> = Mutex::new(false);
static GATE_CV: Condvar = Condvar::new();

#[test]
fn a_job_out_of_time_runs_again_on_worker_threads() {
    cos::set_vm(ThreadVm::builder(Registry::new().with(&STUCK_ONCE)).hosts(2).slots_per_host(2).build())
        .unwrap();
    let limit = Duration::from_millis(300);
    let results = Dispatch::new((0..4u64).map(|i| cos::job(&STUCK_ONCE, i).time_limit(limit)))
        .retries(1)
        .run()
        .unwrap();
    // Without retries, a stuck first attempt is the job's result.
    let again = Dispatch::new((10..12u64).map(|i| cos::job(&STUCK_ONCE, i).time_limit(limit))).run().unwrap();
    cos::finalize();
    *GATE.lock().unwrap() = true;
    GATE_CV.notify_all();
    assert_eq!(results, vec![Ok(1), Ok(2), Ok(3), Ok(4)]);
    assert_eq!(again, vec![Err(Error::Timeout), Err(Error::Timeout)]);
}

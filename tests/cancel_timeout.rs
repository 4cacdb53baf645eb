//! Cancellation of local and remote tasks, joins with a deadline, and remote time limits.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

mod common;

use cos::{Error, Registry, RemoteFn, ThreadVm};

static SLOW: RemoteFn<u64, u64> = RemoteFn::new("slow", |ms| {
    std::thread::sleep(Duration::from_millis(ms));
    ms
});

/// Gates that tests open: a remote job blocks on its gate until the test opens it, so the
/// test knows the job is still running without any timing assumption.
static GATES: (Mutex<[bool; 8]>, Condvar) = (Mutex::new([false; 8]), Condvar::new());

static GATED: RemoteFn<usize, usize> = RemoteFn::new("gated", |gate| {
    let mut open = GATES.0.lock().unwrap();
    while !open[gate] {
        open = GATES.1.wait(open).unwrap();
    }
    gate
});

fn open_gate(gate: usize) {
    GATES.0.lock().unwrap()[gate] = true;
    GATES.1.notify_all();
}

struct Noisy(Rc<RefCell<Vec<&'static str>>>, &'static str);
impl Drop for Noisy {
    fn drop(&mut self) {
        self.0.borrow_mut().push(self.1);
    }
}

#[test]
fn cancelling_a_local_task_unwinds_it_and_its_joiner_sees_cancelled() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let t = cos::spawn(move || {
        let _guard = Noisy(l, "destructor ran");
        loop {
            cos::yield_now();
        }
    })
    .unwrap();
    assert!(log.borrow().is_empty());
    assert_eq!(cos::cancel(t.tid()), Ok(true));
    assert_eq!(*log.borrow(), vec!["destructor ran"]);
    assert_eq!(cos::join(t), Err(Error::Cancelled(t.tid())));
    // The OS goes on.
    assert_eq!(cos::join(cos::spawn(|| 5).unwrap()), Ok(5));
    assert_eq!(cos::task_count(), 1);
}

#[test]
fn cancelling_a_finished_child_leaves_its_value_joinable() {
    let t = cos::spawn(|| 3).unwrap();
    assert_eq!(cos::cancel(t.tid()), Ok(false));
    assert_eq!(cos::join(t), Ok(3));
}

#[test]
fn cancel_follows_the_join_rules() {
    assert_eq!(cos::cancel(cos::Tid(0)), Err(Error::JoinScheduler));
    assert_eq!(cos::cancel(cos::Tid(999)), Err(Error::UnknownTask(cos::Tid(999))));
    let parent = cos::spawn(|| {
        let child = cos::spawn(|| loop {
            cos::yield_now();
        })
        .unwrap();
        child.tid()
    })
    .unwrap();
    // `parent` finished before its child: the child is an orphan, not ours to cancel.
    let child = cos::join(parent).unwrap();
    assert_eq!(cos::cancel(child), Err(Error::NotAChild { tid: child, caller: cos::Tid::MAIN }));
}

#[test]
fn a_cancelled_task_waiting_in_join_leaves_its_children_running_as_orphans() {
    let ran = Rc::new(RefCell::new(0));
    let r = ran.clone();
    let t = cos::spawn(move || {
        let r2 = r.clone();
        let c = cos::spawn(move || {
            for _ in 0..3 {
                cos::yield_now();
            }
            *r2.borrow_mut() += 1;
        })
        .unwrap();
        cos::join(c).unwrap();
    })
    .unwrap();
    cos::cancel(t.tid()).unwrap();
    assert_eq!(cos::join(t), Err(Error::Cancelled(t.tid())));
    for _ in 0..5 {
        cos::yield_now();
    }
    assert_eq!(*ran.borrow(), 1, "the orphan ran to its end");
}

#[test]
fn join_timeout_gives_up_and_the_child_runs_on() {
    let t = cos::spawn(|| {
        for _ in 0..1000 {
            cos::yield_now();
        }
        7
    })
    .unwrap();
    let r = cos::join_timeout(&[t.tid()], Duration::ZERO);
    assert_eq!(r.unwrap_err(), Error::JoinTimeout);
    assert_eq!(Error::JoinTimeout.class(), cos::ErrorClass::CallFailed, "the task runs on");
    assert_eq!(cos::join(t), Ok(7));
    // A join that can succeed in time does.
    let u = cos::spawn(|| 8).unwrap();
    let j = cos::join_timeout(&[u.tid()], Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(j.value::<u8>(), Err(Error::TypeMismatch(u.tid())));
}

#[test]
fn join_timeout_with_only_remote_work_waits_in_the_machine() {
    cos::set_vm(ThreadVm::builder(Registry::new().with(&GATED)).slots_per_host(1).build()).unwrap();
    let t = cos::spawn_remote(&GATED, 0).unwrap();
    assert_eq!(cos::join_timeout(&[t.tid()], Duration::from_millis(1)).unwrap_err(), Error::JoinTimeout);
    open_gate(0);
    assert_eq!(cos::join(t), Ok(0));
    cos::finalize();
}

machine_test!(cancelling_a_remote_task_frees_its_slot, [sim, thread], |on| {
    on.set(Registry::new().with(&SLOW).with(&GATED), 1, 1);
    // SimVm runs the job when it starts it, but its end lies in the virtual future; on
    // ThreadVm the job waits for a gate that opens only after the cancel.
    let gate = if on.settled() { 7 } else { 1 };
    if on.settled() {
        open_gate(gate);
    }
    let t = cos::spawn_remote(&GATED, gate).unwrap();
    assert_eq!(cos::free_slots(), Some(0));
    assert_eq!(cos::cancel(t.tid()), Ok(true));
    assert_eq!(cos::free_slots(), Some(1));
    assert_eq!(cos::join(t), Err(Error::Cancelled(t.tid())));
    open_gate(gate);
    let u = cos::spawn_remote(&SLOW, 1).unwrap();
    assert_eq!(cos::join(u), Ok(1));
});

#[test]
fn a_remote_time_limit_cancels_the_task_with_timeout() {
    cos::set_vm(ThreadVm::builder(Registry::new().with(&SLOW).with(&GATED)).slots_per_host(1).build())
        .unwrap();
    let s = cos::Spawn::new(&GATED, 2).time_limit(Duration::from_millis(5)).start().unwrap();
    assert_eq!(cos::join(s.task), Err(Error::Timeout));
    open_gate(2);
    let ok = cos::Spawn::new(&SLOW, 1).time_limit(Duration::from_secs(60)).start().unwrap();
    assert_eq!(cos::join(ok.task), Ok(1));
    assert_eq!(cos::free_slots(), Some(1));
    cos::finalize();
}

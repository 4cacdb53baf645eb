//! A join that is answered without waiting (a child that has finished already, a non-blocking
//! join with nothing finished) goes on at once when no other task is ready and the loop has
//! nothing to poll. These check that the short way keeps PyOPUS's order: when another task is
//! ready, the joiner still goes to the back of the ready queue and that task runs first, from
//! the main program and from a task alike.

use std::cell::RefCell;
use std::rc::Rc;

type Log = Rc<RefCell<Vec<String>>>;

/// A task that logs `name` and a counter, then yields, `n` times.
fn ticker(log: &Log, name: &'static str, n: usize) -> cos::Task<()> {
    let log = Rc::clone(log);
    cos::spawn(move || {
        for i in 0..n {
            log.borrow_mut().push(format!("{name}{i}"));
            cos::yield_now();
        }
    })
    .unwrap()
}

/// Joins a child that finished while `ticker` is ready, then does a non-blocking join with
/// nothing finished; logs what each join saw.
fn joins_with_a_ticker(log: &Log) {
    let done = cos::spawn(|| 7u32).unwrap();
    let t = ticker(log, "t", 4);
    // The ticker ran first (a spawned task runs before its spawner goes on) and is ready again.
    assert_eq!(*log.borrow(), ["t0"]);
    let v = cos::join(done).unwrap();
    log.borrow_mut().push(format!("joined {v}"));
    let none = cos::try_join_any().unwrap();
    log.borrow_mut().push(format!("try {}", none.is_some()));
    cos::join(t).unwrap();
}

#[test]
fn a_join_answered_at_once_lets_the_ready_tasks_run_first_in_main() {
    let log: Log = Rc::default();
    joins_with_a_ticker(&log);
    assert_eq!(*log.borrow(), ["t0", "t1", "joined 7", "t2", "try false", "t3"]);
}

#[test]
fn a_join_answered_at_once_lets_the_ready_tasks_run_first_in_a_task() {
    let log: Log = Rc::default();
    let l2 = Rc::clone(&log);
    let outer = cos::spawn(move || joins_with_a_ticker(&l2)).unwrap();
    cos::join(outer).unwrap();
    assert_eq!(*log.borrow(), ["t0", "t1", "joined 7", "t2", "try false", "t3"]);
}

#[test]
fn a_join_with_nothing_else_ready_goes_on_at_once_with_the_right_value() {
    for i in 0..1000u64 {
        let t = cos::spawn(move || i * 3).unwrap();
        assert_eq!(cos::join(t).unwrap(), i * 3);
        assert!(cos::try_join_any().unwrap().is_none());
    }
    let inner = cos::spawn(|| {
        let t = cos::spawn(|| "inner").unwrap();
        cos::join(t).unwrap()
    })
    .unwrap();
    assert_eq!(cos::join(inner).unwrap(), "inner");
}

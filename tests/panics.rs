//! A panicking task ends with `Error::Panicked` at its joiner; the other tasks and the main
//! program go on. (PyOPUS lets an exception in a task unwind into the scheduler and end the
//! program.)

use std::cell::RefCell;
use std::rc::Rc;

use cos::{Error, Tid};

type Log = Rc<RefCell<Vec<String>>>;

/// Runs `f` on a new thread, so that it has a cooperative OS of its own.
fn fresh<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn push(log: &Log, s: impl Into<String>) {
    log.borrow_mut().push(s.into());
}

#[test]
fn a_str_panic_is_reported_at_join() {
    fresh(|| {
        let t = cos::spawn(|| -> u32 { panic!("plain message") }).unwrap();
        assert_eq!(
            cos::join(t).unwrap_err(),
            Error::Panicked { tid: t.tid(), message: "plain message".into() }
        );
        assert_eq!(cos::task_count(), 1);
    });
}

#[test]
fn a_string_panic_is_reported_at_join() {
    fresh(|| {
        let n = 7;
        let t = cos::spawn(move || -> u32 { panic!("formatted {n} times") }).unwrap();
        let u = cos::spawn(|| -> u8 { std::panic::panic_any(String::from("an owned String")) }).unwrap();
        assert_eq!(
            cos::join(t).unwrap_err(),
            Error::Panicked { tid: t.tid(), message: "formatted 7 times".into() }
        );
        assert_eq!(
            cos::join(u).unwrap_err(),
            Error::Panicked { tid: u.tid(), message: "an owned String".into() }
        );
    });
}

#[test]
fn a_non_string_panic_still_ends_the_task_only() {
    fresh(|| {
        let t = cos::spawn(|| -> u8 { std::panic::panic_any(42i32) }).unwrap();
        match cos::join(t) {
            Err(Error::Panicked { tid, message }) => {
                assert_eq!(tid, t.tid());
                assert!(!message.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    });
}

#[test]
fn join_any_gives_the_panic_as_the_result() {
    fresh(|| {
        let ok = cos::spawn(|| 1u8).unwrap();
        let bad = cos::spawn(|| -> u8 { panic!("bad child") }).unwrap();
        let j = cos::join_any().unwrap().unwrap();
        assert_eq!((j.tid, j.value::<u8>().unwrap()), (ok.tid(), 1));
        let j = cos::join_any().unwrap().unwrap();
        assert_eq!(j.tid, bad.tid());
        assert!(matches!(&j.result, Err(Error::Panicked { message, .. }) if message == "bad child"));
        assert_eq!(
            j.value::<u8>().unwrap_err(),
            Error::Panicked { tid: bad.tid(), message: "bad child".into() }
        );
    });
}

#[test]
fn other_tasks_run_on_and_later_spawns_work() {
    fresh(|| {
        let log: Log = Rc::new(RefCell::new(Vec::new()));
        let (la, lb) = (log.clone(), log.clone());
        let a = cos::spawn(move || {
            for i in 0..4 {
                push(&la, format!("A {i}"));
                cos::yield_now();
            }
            "A"
        })
        .unwrap();
        let bad = cos::spawn(|| -> u8 { panic!("in the middle") }).unwrap();
        let b = cos::spawn(move || {
            for i in 0..4 {
                push(&lb, format!("B {i}"));
                cos::yield_now();
            }
            "B"
        })
        .unwrap();
        assert_eq!(cos::join(a).unwrap(), "A");
        assert_eq!(cos::join(b).unwrap(), "B");
        assert!(matches!(cos::join(bad), Err(Error::Panicked { .. })));
        assert_eq!(log.borrow().len(), 8);
        // The OS is in order: new tasks, nested ones included, spawn and join as usual.
        let t = cos::spawn(|| {
            let inner = cos::spawn(|| {
                cos::yield_now();
                20
            })
            .unwrap();
            cos::join(inner).unwrap() + 1
        })
        .unwrap();
        assert!(t.tid() > bad.tid());
        assert_eq!(cos::join(t).unwrap(), 21);
        assert_eq!(cos::task_count(), 1);
    });
}

#[test]
fn a_panic_after_yields_ends_that_task_only() {
    fresh(|| {
        let log: Log = Rc::new(RefCell::new(Vec::new()));
        let (lp, lo) = (log.clone(), log.clone());
        let panicker = cos::spawn(move || -> u32 {
            for i in 0..3 {
                push(&lp, format!("P {i}"));
                cos::yield_now();
            }
            panic!("after {} yields", 3)
        })
        .unwrap();
        let other = cos::spawn(move || {
            for i in 0..6 {
                push(&lo, format!("O {i}"));
                cos::yield_now();
            }
            6u32
        })
        .unwrap();
        // Wait for the panicker first: the error comes at the join, the other task goes on.
        assert_eq!(
            cos::join(panicker).unwrap_err(),
            Error::Panicked { tid: panicker.tid(), message: "after 3 yields".into() }
        );
        assert_eq!(cos::join(other).unwrap(), 6);
        let log = log.borrow();
        assert_eq!(log.iter().filter(|l| l.starts_with('P')).count(), 3);
        assert_eq!(log.iter().filter(|l| l.starts_with('O')).count(), 6);
        assert_eq!(log.last().map(String::as_str), Some("O 5"));
    });
}

#[test]
fn a_panic_runs_the_task_destructors() {
    struct Guard(Log, &'static str);
    impl Drop for Guard {
        fn drop(&mut self) {
            push(&self.0, format!("dropped {}", self.1));
        }
    }
    fresh(|| {
        let log: Log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let t = cos::spawn(move || -> u8 {
            let _g = Guard(l.clone(), "guard");
            cos::yield_now();
            push(&l, "about to panic");
            panic!("with a guard")
        })
        .unwrap();
        assert!(matches!(cos::join(t), Err(Error::Panicked { .. })));
        assert_eq!(*log.borrow(), ["about to panic", "dropped guard"]);
    });
}

#[test]
fn a_panicking_grandchild_is_seen_by_its_parent_only() {
    fresh(|| {
        let parent = cos::spawn(|| {
            let child = cos::spawn(|| -> u8 {
                cos::yield_now();
                panic!("deep")
            })
            .unwrap();
            match cos::join(child) {
                Err(Error::Panicked { tid, message }) => {
                    assert_eq!(tid, child.tid());
                    format!("child {tid} panicked: {message}")
                }
                other => format!("unexpected {other:?}"),
            }
        })
        .unwrap();
        assert_eq!(cos::join(parent).unwrap(), "child 3 panicked: deep");
        assert_eq!(parent.tid(), Tid(2));
    });
}

#[test]
fn the_error_displays_the_task_and_message() {
    fresh(|| {
        let t = cos::spawn(|| -> u8 { panic!("shown") }).unwrap();
        let e = cos::join(t).unwrap_err();
        assert_eq!(e.to_string(), format!("task {} panicked: shown", t.tid()));
    });
}

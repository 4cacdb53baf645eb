//! PyOPUS's Join rules: any child or a list, blocking or not, the lowest finished tid first,
//! direct delivery to a waiting parent, the errors of a bad join, and typed values.

use std::cell::RefCell;
use std::rc::Rc;

use cos::{Error, Tid};

type Log = Rc<RefCell<Vec<String>>>;

/// Runs `f` on a new thread, so that it has a cooperative OS of its own.
fn fresh<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(log: &Log, s: impl Into<String>) {
    log.borrow_mut().push(s.into());
}

/// A task that yields `n` times before returning `value`.
fn yielding<T: 'static>(n: usize, value: T) -> impl FnOnce() -> T {
    move || {
        for _ in 0..n {
            cos::yield_now();
        }
        value
    }
}

#[test]
fn join_any_without_children_returns_none_at_once() {
    fresh(|| {
        assert!(cos::join_any().unwrap().is_none());
        assert!(cos::try_join_any().unwrap().is_none());
        assert!(cos::join_list(&[], true).unwrap().is_none());
        // Inside a task too.
        let t = cos::spawn(|| cos::join_any().unwrap().is_none()).unwrap();
        assert!(cos::join(t).unwrap());
        // Once every child is joined there are no children again.
        let _ = cos::spawn(yielding(2, 1u8)).unwrap();
        assert!(cos::join_any().unwrap().is_some());
        assert!(cos::join_any().unwrap().is_none());
    });
}

#[test]
fn join_any_waits_for_a_running_child() {
    fresh(|| {
        let t = cos::spawn(yielding(5, 'x')).unwrap();
        let j = cos::join_any().unwrap().expect("a child");
        assert_eq!(j.tid, t.tid());
        assert_eq!(j.value::<char>().unwrap(), 'x');
    });
}

#[test]
fn lowest_finished_tid_wins() {
    fresh(|| {
        // All three finish at once when spawned (a child runs before its spawner goes on).
        let a = cos::spawn(|| 10u32).unwrap();
        let b = cos::spawn(|| 20u32).unwrap();
        let c = cos::spawn(|| 30u32).unwrap();
        assert!(a.tid() < b.tid() && b.tid() < c.tid());
        assert_eq!(cos::finished_tasks(), 3);
        // A list in any order still gives the lowest finished tid.
        let j = cos::join_list(&[c.tid(), b.tid()], true).unwrap().unwrap();
        assert_eq!((j.tid, j.value::<u32>().unwrap()), (b.tid(), 20));
        let j = cos::join_any().unwrap().unwrap();
        assert_eq!((j.tid, j.value::<u32>().unwrap()), (a.tid(), 10));
        let j = cos::join_any().unwrap().unwrap();
        assert_eq!((j.tid, j.value::<u32>().unwrap()), (c.tid(), 30));
        assert!(cos::join_any().unwrap().is_none());
    });
}

#[test]
fn lowest_tid_wins_among_finished_only() {
    fresh(|| {
        // The lower tid runs longer: the higher one finishes first and is joined first.
        let slow = cos::spawn(yielding(10, "slow")).unwrap();
        let quick = cos::spawn(yielding(1, "quick")).unwrap();
        let j = cos::join_list(&[slow.tid(), quick.tid()], true).unwrap().unwrap();
        assert_eq!(j.tid, quick.tid());
        let j = cos::join_any().unwrap().unwrap();
        assert_eq!(j.tid, slow.tid());
    });
}

#[test]
fn non_blocking_join_of_a_running_child_returns_none() {
    fresh(|| {
        let t = cos::spawn(yielding(10, 5i64)).unwrap();
        assert!(cos::join_list(&[t.tid()], false).unwrap().is_none());
        assert!(cos::try_join_any().unwrap().is_none());
        assert_eq!(cos::try_join(t).unwrap(), None);
        // The child is still there and joins normally.
        assert_eq!(cos::task_count(), 2);
        assert_eq!(cos::join(t).unwrap(), 5);
    });
}

#[test]
fn a_non_blocking_join_is_a_scheduling_point() {
    fresh(|| {
        // As in PyOPUS, every system call puts the caller at the back of the ready queue: the
        // child runs between the check of a non-blocking join and the caller's next step.
        let log = log();
        let l = log.clone();
        let t = cos::spawn(move || {
            for i in 0..3 {
                push(&l, format!("child {i}"));
                cos::yield_now();
            }
            7u8
        })
        .unwrap();
        push(&log, "spawned");
        assert_eq!(cos::try_join(t).unwrap(), None);
        push(&log, "try_join 1");
        assert_eq!(cos::try_join(t).unwrap(), None);
        push(&log, "try_join 2");
        // The child finished during this call, after the check.
        assert_eq!(cos::try_join(t).unwrap(), None);
        push(&log, "try_join 3");
        assert_eq!(cos::finished_tasks(), 1);
        assert_eq!(cos::try_join(t).unwrap(), Some(7));
        assert_eq!(
            *log.borrow(),
            ["child 0", "spawned", "child 1", "try_join 1", "child 2", "try_join 2", "try_join 3"]
        );
    });
}

#[test]
fn try_join_gives_the_value_once_finished() {
    fresh(|| {
        let t = cos::spawn(yielding(3, vec![1u8, 2])).unwrap();
        assert_eq!(cos::try_join(t).unwrap(), None);
        cos::yield_now();
        assert_eq!(cos::try_join(t).unwrap(), None);
        assert_eq!(cos::finished_tasks(), 1);
        assert_eq!(cos::try_join(t).unwrap(), Some(vec![1, 2]));
        // Joined once: the tid is gone.
        assert_eq!(cos::try_join(t), Err(Error::UnknownTask(t.tid())));
        assert_eq!(cos::finished_tasks(), 0);
    });
}

#[test]
fn join_of_tid_zero_is_an_error() {
    fresh(|| {
        assert_eq!(cos::join_list(&[Tid::SCHEDULER], true).unwrap_err(), Error::JoinScheduler);
        assert_eq!(cos::join_list(&[Tid(0)], false).unwrap_err(), Error::JoinScheduler);
        let t = cos::spawn(|| 1u8).unwrap();
        // Mixed with a valid child: still an error, and the child stays joinable.
        assert_eq!(cos::join_list(&[t.tid(), Tid(0)], true).unwrap_err(), Error::JoinScheduler);
        assert_eq!(cos::finished_tasks(), 1);
        // From inside a task as well.
        let inner = cos::spawn(|| cos::join_list(&[Tid(0)], true).unwrap_err()).unwrap();
        assert_eq!(cos::join(inner).unwrap(), Error::JoinScheduler);
        assert_eq!(cos::join(t).unwrap(), 1);
    });
}

#[test]
fn join_of_an_unknown_tid_is_an_error() {
    fresh(|| {
        assert_eq!(cos::join_list(&[Tid(9999)], true).unwrap_err(), Error::UnknownTask(Tid(9999)));
        assert_eq!(cos::join_list(&[Tid(9999)], false).unwrap_err(), Error::UnknownTask(Tid(9999)));
        // A tid that is not yet given out.
        let t = cos::spawn(|| ()).unwrap();
        let next = Tid(t.tid().0 + 1);
        assert_eq!(cos::join_list(&[next], true).unwrap_err(), Error::UnknownTask(next));
        // A child joined already is unknown afterwards.
        cos::join(t).unwrap();
        assert_eq!(cos::join(t).unwrap_err(), Error::UnknownTask(t.tid()));
        // Tids are never reused.
        let u = cos::spawn(|| ()).unwrap();
        assert!(u.tid() > t.tid());
        cos::join(u).unwrap();
    });
}

#[test]
fn join_of_another_tasks_child_is_an_error() {
    fresh(|| {
        // A returns the handle of its own, still running, child B.
        let a = cos::spawn(|| cos::spawn(yielding(3, 7u8)).unwrap()).unwrap();
        let b = cos::join(a).unwrap();
        assert_eq!(cos::join(b).unwrap_err(), Error::NotAChild { tid: b.tid(), caller: Tid::MAIN });
        // The main program is nobody's child either.
        assert_eq!(
            cos::join_list(&[Tid::MAIN], true).unwrap_err(),
            Error::NotAChild { tid: Tid::MAIN, caller: Tid::MAIN }
        );
        // A task joining a sibling (a child of main).
        let sibling = cos::spawn(yielding(3, ())).unwrap();
        let s = sibling.tid();
        let c = cos::spawn(move || (cos::tid(), cos::join_list(&[s], true).unwrap_err())).unwrap();
        let (c_tid, err) = cos::join(c).unwrap();
        assert_eq!(err, Error::NotAChild { tid: s, caller: c_tid });
        // A task joining itself.
        let me = cos::spawn(|| cos::join_list(&[cos::tid()], true).unwrap_err()).unwrap();
        assert_eq!(cos::join(me).unwrap(), Error::NotAChild { tid: me.tid(), caller: me.tid() });
        cos::join(sibling).unwrap();
        // Once B has finished (as an orphan: A is gone) its tid is simply unknown.
        for _ in 0..4 {
            cos::yield_now();
        }
        assert_eq!(cos::task_count(), 1);
        assert_eq!(cos::join(b).unwrap_err(), Error::UnknownTask(b.tid()));
    });
}

#[test]
fn a_waiting_parent_gets_the_value_directly() {
    fresh(|| {
        let log = log();
        let l = log.clone();
        let t = cos::spawn(move || {
            for i in 0..3 {
                push(&l, format!("child {i}"));
                cos::yield_now();
            }
            push(&l, "child returns");
            3u32
        })
        .unwrap();
        push(&log, "main joins");
        // The child is still running, so main waits; the value is handed straight to it.
        let v = cos::join(t).unwrap();
        push(&log, format!("main joined {v}"));
        assert_eq!(
            *log.borrow(),
            ["child 0", "main joins", "child 1", "child 2", "child returns", "main joined 3"]
        );
        assert_eq!(cos::finished_tasks(), 0);
    });
}

#[test]
fn a_child_nobody_waits_for_goes_to_the_finished_map() {
    fresh(|| {
        let log = log();
        let l = log.clone();
        let t = cos::spawn(move || {
            push(&l, "child runs");
            9u32
        })
        .unwrap();
        // It ran and finished before the spawner went on.
        push(&log, format!("main after spawn, finished {}", cos::finished_tasks()));
        assert_eq!(cos::task_count(), 1);
        let v = cos::join(t).unwrap();
        push(&log, format!("main joined {v}"));
        assert_eq!(*log.borrow(), ["child runs", "main after spawn, finished 1", "main joined 9"]);
        assert_eq!(cos::finished_tasks(), 0);
    });
}

#[test]
fn a_parent_waiting_on_a_list_is_not_woken_by_another_child() {
    fresh(|| {
        let log = log();
        let (l1, l2) = (log.clone(), log.clone());
        let waited = cos::spawn(move || {
            for _ in 0..4 {
                cos::yield_now();
            }
            push(&l1, "waited returns");
            1u8
        })
        .unwrap();
        let other = cos::spawn(move || {
            cos::yield_now();
            push(&l2, "other returns");
            2u8
        })
        .unwrap();
        let j = cos::join_list(&[waited.tid()], true).unwrap().unwrap();
        push(&log, format!("main joined {}", j.tid));
        assert_eq!(j.tid, waited.tid());
        assert_eq!(j.value::<u8>().unwrap(), 1);
        assert_eq!(
            *log.borrow(),
            ["other returns", "waited returns", format!("main joined {}", waited.tid()).as_str()]
        );
        // The other child finished meanwhile and waits in the finished map.
        assert_eq!(cos::finished_tasks(), 1);
        assert_eq!(cos::try_join(other).unwrap(), Some(2));
    });
}

#[test]
fn a_parent_waiting_on_any_child_gets_the_first_to_finish() {
    fresh(|| {
        let a = cos::spawn(yielding(20, 1u8)).unwrap();
        let b = cos::spawn(yielding(2, 2u8)).unwrap();
        let c = cos::spawn(yielding(8, 3u8)).unwrap();
        let order: Vec<Tid> = std::iter::from_fn(|| cos::join_any().unwrap().map(|j| j.tid)).collect();
        assert_eq!(order, [b.tid(), c.tid(), a.tid()]);
    });
}

#[test]
fn children_of_different_types_join_through_joined_value() {
    fresh(|| {
        let n = cos::spawn(yielding(5, 42u32)).unwrap();
        let s = cos::spawn(yielding(1, String::from("text"))).unwrap();
        let v = cos::spawn(yielding(12, vec![1.5f64, 2.5])).unwrap();
        let mut seen = Vec::new();
        while let Some(j) = cos::join_any().unwrap() {
            let tid = j.tid;
            if tid == n.tid() {
                assert_eq!(j.value::<u32>().unwrap(), 42);
            } else if tid == s.tid() {
                assert_eq!(j.value::<String>().unwrap(), "text");
            } else if tid == v.tid() {
                assert_eq!(j.value::<Vec<f64>>().unwrap(), vec![1.5, 2.5]);
            } else {
                panic!("unexpected child {tid}");
            }
            seen.push(tid);
        }
        assert_eq!(seen, [s.tid(), n.tid(), v.tid()]);
    });
}

#[test]
fn a_wrong_type_is_a_type_mismatch() {
    fresh(|| {
        let t = cos::spawn(|| 5u32).unwrap();
        let j = cos::join_any().unwrap().unwrap();
        assert_eq!(j.value::<i64>().unwrap_err(), Error::TypeMismatch(t.tid()));

        // The untyped value can be inspected before it is taken.
        let t = cos::spawn(|| "str").unwrap();
        let j = cos::join_any().unwrap().unwrap();
        assert_eq!(j.tid, t.tid());
        let value = j.result.unwrap();
        assert!(value.is::<&str>());
        assert!(!value.is::<String>());
        assert_eq!(value.downcast_ref::<&str>(), Some(&"str"));
        let value = value.downcast::<String>().unwrap_err();
        assert_eq!(value.downcast::<&str>().ok(), Some("str"));
    });
}

#[test]
fn nested_joins_follow_the_same_rules() {
    fresh(|| {
        let outer = cos::spawn(|| {
            // Inside a task: no children yet, then the lowest finished tid first.
            assert!(cos::join_any().unwrap().is_none());
            let a = cos::spawn(|| 1u16).unwrap();
            let b = cos::spawn(|| 2u16).unwrap();
            assert_eq!(cos::finished_tasks(), 2);
            let first = cos::join_any().unwrap().unwrap();
            assert_eq!(first.tid, a.tid());
            assert_eq!(cos::try_join(b).unwrap(), Some(2));
            assert!(cos::join_any().unwrap().is_none());
            first.value::<u16>().unwrap() + 100
        })
        .unwrap();
        assert_eq!(cos::join(outer).unwrap(), 101);
    });
}

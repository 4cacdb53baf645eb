//! Tasks that spawn tasks: three levels of nesting, tids and task counts seen from inside tasks,
//! and orphans (tasks that outlive their parent).

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

/// Level 3: a leaf that yields a little and returns a number made of its path.
fn leaf(i: u64, j: u64, k: u64) -> u64 {
    for _ in 0..k {
        cos::yield_now();
    }
    100 * i + 10 * j + k
}

/// Level 2: spawns three leaves, joins them in reverse order, returns their sum.
fn middle(i: u64, j: u64) -> u64 {
    let me = cos::tid();
    let kids: Vec<_> = (0..3).map(|k| cos::spawn(move || leaf(i, j, k)).unwrap()).collect();
    assert_eq!(cos::tid(), me, "a spawn does not change the caller's tid");
    kids.into_iter().rev().map(|t| cos::join(t).unwrap()).sum()
}

/// Level 1: spawns three middles and joins them with join_any.
fn top(i: u64) -> u64 {
    for j in 0..3 {
        cos::spawn(move || middle(i, j)).unwrap();
    }
    let mut sum = 0;
    while let Some(j) = cos::join_any().unwrap() {
        sum += j.value::<u64>().unwrap();
    }
    sum
}

#[test]
fn three_levels_of_nested_spawns() {
    fresh(|| {
        let tops: Vec<_> = (0..3).map(|i| cos::spawn(move || top(i)).unwrap()).collect();
        let sums: Vec<u64> = tops.iter().map(|t| cos::join(*t).unwrap()).collect();
        let expected = |i: u64| (0..3).flat_map(|j| (0..3).map(move |k| 100 * i + 10 * j + k)).sum::<u64>();
        assert_eq!(sums, [expected(0), expected(1), expected(2)]);
        assert_eq!(sums.iter().sum::<u64>(), 3 * 9 * (100 + 10 + 1));
        // 3 tops + 9 middles + 27 leaves, all finished and joined.
        assert_eq!(cos::task_count(), 1);
        let next = cos::spawn(cos::tid).unwrap();
        assert_eq!(next.tid(), Tid(2 + 3 + 9 + 27));
        assert_eq!(cos::join(next).unwrap(), next.tid());
    });
}

#[test]
fn tid_inside_tasks_and_parentage() {
    fresh(|| {
        assert_eq!(cos::tid(), Tid::MAIN);
        let outer = cos::spawn(|| {
            let me = cos::tid();
            let inner = cos::spawn(|| {
                let me = cos::tid();
                cos::yield_now();
                // Still the same after a switch.
                assert_eq!(cos::tid(), me);
                let deepest = cos::spawn(cos::tid).unwrap();
                (me, deepest.tid(), cos::join(deepest).unwrap())
            })
            .unwrap();
            cos::yield_now();
            assert_eq!(cos::tid(), me);
            (me, inner.tid(), cos::join(inner).unwrap())
        })
        .unwrap();
        // Back in main: the tid is main's again.
        assert_eq!(cos::tid(), Tid::MAIN);
        let (o_me, inner_tid, (i_me, deepest_tid, deepest_seen)) = cos::join(outer).unwrap();
        assert_eq!(o_me, outer.tid());
        assert_eq!(i_me, inner_tid);
        assert_eq!(deepest_seen, deepest_tid);
        assert_eq!([o_me, i_me, deepest_tid], [Tid(2), Tid(3), Tid(4)]);
        assert_eq!(cos::tid(), Tid::MAIN);
    });
}

#[test]
fn task_counts_and_finished_tasks() {
    fresh(|| {
        assert_eq!((cos::task_count(), cos::local_task_count(), cos::remote_task_count()), (1, 1, 0));
        assert_eq!(cos::finished_tasks(), 0);

        let long = cos::spawn(|| {
            for _ in 0..100 {
                cos::yield_now();
            }
        })
        .unwrap();
        let quick = cos::spawn(|| ()).unwrap();
        assert_eq!((cos::task_count(), cos::local_task_count()), (2, 2));
        assert_eq!(cos::finished_tasks(), 1);

        // Inside a task the counts are the whole OS's, finished_tasks the task's own.
        let probe = cos::spawn(|| {
            let at_start = (cos::task_count(), cos::finished_tasks());
            let _ = cos::spawn(|| ()).unwrap();
            let _ = cos::spawn(|| ()).unwrap();
            let after = (cos::task_count(), cos::finished_tasks());
            while cos::join_any().unwrap().is_some() {}
            (at_start, after, cos::finished_tasks())
        })
        .unwrap();
        assert_eq!(cos::join(probe).unwrap(), ((3, 0), (3, 2), 0));
        // Main's finished map was untouched by the probe's children (and got the probe back).
        assert_eq!(cos::finished_tasks(), 1);
        cos::join(quick).unwrap();
        assert_eq!(cos::finished_tasks(), 0);
        cos::join(long).unwrap();
        assert_eq!((cos::task_count(), cos::local_task_count(), cos::remote_task_count()), (1, 1, 0));
    });
}

#[test]
fn an_orphan_runs_on_after_its_parent_finished() {
    fresh(|| {
        let log: Log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let parent = cos::spawn(move || {
            let l2 = l.clone();
            let child = cos::spawn(move || {
                for i in 0..5 {
                    push(&l2, format!("orphan {i}"));
                    cos::yield_now();
                }
                push(&l2, "orphan done");
                String::from("dropped")
            })
            .unwrap();
            push(&l, "parent done");
            child.tid()
        })
        .unwrap();
        let child_tid = cos::join(parent).unwrap();
        assert_eq!(cos::task_count(), 2, "the orphan still runs");
        // Main cannot join it: it is not main's child.
        assert_eq!(
            cos::join_list(&[child_tid], true).unwrap_err(),
            Error::NotAChild { tid: child_tid, caller: Tid::MAIN }
        );
        // Nor does main have any child left to wait for.
        assert!(cos::join_any().unwrap().is_none());
        while cos::task_count() > 1 {
            cos::yield_now();
        }
        assert_eq!(log.borrow().first().map(String::as_str), Some("orphan 0"));
        assert_eq!(log.borrow()[1], "parent done");
        assert_eq!(log.borrow().last().map(String::as_str), Some("orphan done"));
        assert_eq!(log.borrow().len(), 7);
        // Its value was dropped; its tid is gone.
        assert_eq!(cos::finished_tasks(), 0);
        assert_eq!(cos::join_list(&[child_tid], false).unwrap_err(), Error::UnknownTask(child_tid));
        // The main program goes on as usual.
        let t = cos::spawn(|| 5u8).unwrap();
        assert!(t.tid() > child_tid);
        assert_eq!(cos::join(t).unwrap(), 5);
    });
}

#[test]
fn orphans_of_orphans_and_their_own_joins() {
    fresh(|| {
        let done: Rc<RefCell<Vec<Tid>>> = Rc::new(RefCell::new(Vec::new()));
        let d = done.clone();
        // A spawns B and returns; B spawns C and D, joins C (still works as an orphan) and returns
        // without joining D; D outlives B.
        let a = cos::spawn(move || {
            let d1 = d.clone();
            cos::spawn(move || {
                let d2 = d1.clone();
                let d3 = d1.clone();
                let c = cos::spawn(move || {
                    for _ in 0..3 {
                        cos::yield_now();
                    }
                    d2.borrow_mut().push(cos::tid());
                    3u32
                })
                .unwrap();
                cos::spawn(move || {
                    for _ in 0..10 {
                        cos::yield_now();
                    }
                    d3.borrow_mut().push(cos::tid());
                })
                .unwrap();
                let v = cos::join(c).unwrap();
                assert_eq!(v, 3);
                d1.borrow_mut().push(cos::tid());
            })
            .unwrap();
            d.borrow_mut().push(cos::tid());
            1u8
        })
        .unwrap();
        // Tids: A 2, B 3, C 4, D 5.
        assert_eq!(cos::join(a).unwrap(), 1);
        assert_eq!(cos::task_count(), 4);
        // Main waits on a child of its own while the orphans finish around it.
        let mine = cos::spawn(|| {
            for _ in 0..20 {
                cos::yield_now();
            }
            "mine"
        })
        .unwrap();
        assert_eq!(cos::join(mine).unwrap(), "mine");
        assert_eq!(*done.borrow(), [Tid(2), Tid(4), Tid(3), Tid(5)]);
        assert_eq!(cos::task_count(), 1);
        assert_eq!(cos::finished_tasks(), 0);
        assert!(cos::join_any().unwrap().is_none());
    });
}

#[test]
fn a_task_with_unjoined_finished_children_finishes_cleanly() {
    fresh(|| {
        // The children's values sit in the parent's finished map and go with it.
        let parent = cos::spawn(|| {
            for i in 0..10u32 {
                cos::spawn(move || vec![i; 100]).unwrap();
            }
            cos::finished_tasks()
        })
        .unwrap();
        assert_eq!(cos::join(parent).unwrap(), 10);
        assert_eq!(cos::task_count(), 1);
        assert_eq!(cos::finished_tasks(), 0);
        let t = cos::spawn(|| 1).unwrap();
        assert_eq!(cos::join(t).unwrap(), 1);
    });
}

/// A value whose destructor asks the OS for the running tid.
struct AsksTid(Rc<RefCell<Vec<Tid>>>);

impl Drop for AsksTid {
    fn drop(&mut self) {
        self.0.borrow_mut().push(cos::tid());
    }
}

#[test]
fn values_dropped_by_the_scheduler_may_call_the_os_in_their_destructors() {
    fresh(|| {
        let seen: Rc<RefCell<Vec<Tid>>> = Rc::new(RefCell::new(Vec::new()));
        // An orphan's value: nobody can join it, the scheduler drops it.
        let s = seen.clone();
        let p = cos::spawn(move || {
            cos::spawn(move || {
                cos::yield_now();
                AsksTid(s)
            })
            .unwrap();
        })
        .unwrap();
        cos::join(p).unwrap();
        while cos::task_count() > 1 {
            cos::yield_now();
        }
        assert_eq!(seen.borrow().len(), 1);
        // A finished child that its parent never joined: dropped with the parent.
        let s = seen.clone();
        let q = cos::spawn(move || {
            cos::spawn(move || AsksTid(s)).unwrap();
        })
        .unwrap();
        cos::join(q).unwrap();
        assert_eq!(seen.borrow().len(), 2);
    });
}

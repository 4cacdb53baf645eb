//! A plain yield takes a short way past the loop's polling point when the loop has nothing to
//! poll. These check that the short way keeps the loop's rules: round-robin order among the
//! yielding tasks and the main program, a remote task's end still seen by tasks that only
//! yield, and a deadline still kept.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use cos::{Registry, RemoteFn, ThreadVm};

static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);

/// Yields until the caller has a finished child, at most `bound` times; the yields it took.
/// `finished_tasks` reads the table without a system call, so only the yields can let the
/// machine's events in.
fn yield_until_a_child_finished(bound: u64) -> u64 {
    for n in 0..bound {
        if cos::finished_tasks() > 0 {
            return n;
        }
        cos::yield_now();
    }
    panic!("no child finished in {bound} yields: the yields did not poll the machine");
}

#[test]
fn yields_alone_still_take_in_a_remote_result() {
    let vm = ThreadVm::builder(Registry::new().with(&DOUBLE)).slots_per_host(2).build();
    assert_eq!(cos::set_vm(vm), Ok(true));
    // The main program is the only ready task: each yield would come straight back.
    let t = cos::spawn_remote(&DOUBLE, 21).unwrap();
    yield_until_a_child_finished(20_000_000);
    assert_eq!(cos::join(t).unwrap(), 42);

    // With a local task yielding too, each yield switches between the two.
    let stop = Rc::new(Cell::new(false));
    let s2 = Rc::clone(&stop);
    let spinner = cos::spawn(move || {
        while !s2.get() {
            cos::yield_now();
        }
    })
    .unwrap();
    let t = cos::spawn_remote(&DOUBLE, 4).unwrap();
    yield_until_a_child_finished(20_000_000);
    assert_eq!(cos::join(t).unwrap(), 8);
    stop.set(true);
    cos::join(spinner).unwrap();
    cos::finalize();
}

#[test]
fn yields_go_round_robin_with_the_main_program() {
    let order = Rc::new(RefCell::new(Vec::new()));
    let tasks: Vec<_> = (0..3u64)
        .map(|k| {
            let order = Rc::clone(&order);
            cos::spawn(move || {
                for i in 0..3 {
                    order.borrow_mut().push((k, i));
                    cos::yield_now();
                }
            })
            .unwrap()
        })
        .collect();
    // A spawn runs its child first, then the spawner: each child's first yield puts it behind
    // the main program, which spawns the next one behind it.
    for i in 1..4 {
        order.borrow_mut().push((9, i));
        cos::yield_now();
    }
    for t in tasks {
        cos::join(t).unwrap();
    }
    let expected =
        vec![(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0), (9, 1), (1, 2), (2, 1), (9, 2), (2, 2), (9, 3)];
    assert_eq!(*order.borrow(), expected);
}

#[test]
fn a_yielding_task_alone_still_sees_its_parent_deadline() {
    // The main program waits in a timed join on a task that only yields: the loop must keep
    // reading the clock while that task is the only one ready. The task gives up after a bound
    // of yields, so a loop that never looks at the clock ends the join with its value instead.
    let stop = Rc::new(Cell::new(false));
    let s2 = Rc::clone(&stop);
    let spinner = cos::spawn(move || {
        for _ in 0..20_000_000u64 {
            if s2.get() {
                return;
            }
            cos::yield_now();
        }
    })
    .unwrap();
    let r = cos::join_timeout(&[spinner.tid()], Duration::from_millis(20));
    assert_eq!(r.unwrap_err(), cos::Error::JoinTimeout);
    stop.set(true);
    cos::join(spinner).unwrap();
}

//! A local task that overflows its stack ends with Error::StackOverflow at its joiner; the
//! process and the other tasks live on. A remote job that overflows fails with
//! `RemoteErrorKind::StackOverflow` on every machine, and its worker is replaced, so that what
//! the job's abandoned frames held is not inherited by later jobs.

mod common;

use std::cell::RefCell;
use std::hint::black_box;

use common::remote_failure;
use cos::RemoteErrorKind;

fn recurse(n: u64) -> u64 {
    let pad = black_box([n; 64]);
    if n == u64::MAX {
        return 0;
    }
    black_box(recurse(n + 1)) + pad[3]
}

#[test]
fn overflowing_task_gives_an_error_and_others_run_on() {
    let before = cos::spawn(|| {
        cos::yield_now();
        cos::yield_now();
        "survivor"
    })
    .unwrap();
    let bad = cos::spawn(|| recurse(0)).unwrap();
    assert_eq!(cos::join(bad), Err(cos::Error::StackOverflow(bad.tid())));
    assert_eq!(cos::join(before), Ok("survivor"));
    // The stack is reused and works; a second overflow is caught too.
    let again = cos::spawn(|| recurse(0)).unwrap();
    assert_eq!(cos::join(again), Err(cos::Error::StackOverflow(again.tid())));
    let ok = cos::spawn(|| 40 + 2).unwrap();
    assert_eq!(cos::join(ok), Ok(42));
}

#[test]
fn small_stacks_overflow_sooner_but_safely() {
    cos::set_stack_size(32 * 1024);
    let t = cos::spawn(|| recurse(0)).unwrap();
    assert_eq!(cos::join(t), Err(cos::Error::StackOverflow(t.tid())));
    let u = cos::spawn(|| black_box(recurse as fn(u64) -> u64) as usize > 0).unwrap();
    assert_eq!(cos::join(u), Ok(true));
}

static RUNAWAY: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("runaway", recurse);
static DOUBLE: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("double", |x| 2 * x);

thread_local! {
    /// State of the worker thread that a job may hold while it overflows.
    static HELD: RefCell<u64> = const { RefCell::new(0) };
}

/// Overflows while it holds the worker thread's `HELD` borrowed.
static RUNAWAY_HOLDING: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("runaway_holding", |n| {
    HELD.with(|h| {
        let mut held = h.borrow_mut();
        *held += 1;
        recurse(n) + *held
    })
});
/// Whether `HELD` is free on the worker that runs this job.
static HELD_IS_FREE: cos::RemoteFn<(), bool> =
    cos::RemoteFn::new("held_is_free", |()| HELD.with(|h| h.try_borrow_mut().is_ok()));

fn registry() -> cos::Registry {
    cos::Registry::new().with(&RUNAWAY).with(&DOUBLE).with(&RUNAWAY_HOLDING).with(&HELD_IS_FREE)
}

machine_test!(a_runaway_recursion_in_a_remote_function_ends_only_that_job, [sim, thread], |on| {
    // The workers run each call in a local task, so the overflow is caught there too.
    on.set(registry(), 1, 1);
    let bad = cos::spawn_remote(&RUNAWAY, 0).unwrap();
    let r = cos::join(bad);
    assert_eq!(remote_failure(&r).map(|f| f.0), Some(RemoteErrorKind::StackOverflow), "{r:?}");
    let results = cos::dispatch((0..5).map(|i| cos::job(&DOUBLE, i))).unwrap();
    assert_eq!(results, (0..5).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    assert_eq!(cos::free_slots(), Some(1));
});

machine_test!(a_job_after_an_overflow_does_not_inherit_what_the_overflow_held, [sim, thread], |on| {
    // One slot: the next job runs in the same slot. Its worker thread is a new one, so the
    // thread-local borrow the overflowed job never released is not there.
    on.set(registry(), 1, 1);
    assert_eq!(cos::dispatch_single(cos::job(&HELD_IS_FREE, ())), Ok(true));
    let r = cos::dispatch_single(cos::job(&RUNAWAY_HOLDING, 0));
    assert_eq!(remote_failure(&r).map(|f| f.0), Some(RemoteErrorKind::StackOverflow), "{r:?}");
    assert_eq!(cos::dispatch_single(cos::job(&HELD_IS_FREE, ())), Ok(true));
    assert_eq!(cos::dispatch_single(cos::job(&DOUBLE, 21)), Ok(42));
});

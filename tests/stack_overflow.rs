//! A local task that overflows its stack ends with Error::StackOverflow at its joiner; the
//! process and the other tasks live on.

use std::hint::black_box;

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

#[test]
fn a_runaway_recursion_in_a_remote_function_ends_only_that_job() {
    // The worker thread runs each call as a local task, so the overflow is caught there too.
    let registry = cos::Registry::new().with(&RUNAWAY).with(&DOUBLE);
    cos::set_vm(cos::ThreadVm::builder(registry).slots_per_host(1).build()).unwrap();
    let bad = cos::spawn_remote(&RUNAWAY, 0).unwrap();
    assert_eq!(cos::join(bad), Err(cos::Error::Remote("stack overflow".into())));
    let results = cos::dispatch((0..5).map(|i| cos::job(&DOUBLE, i))).unwrap();
    assert_eq!(results, (0..5).map(|i| Ok(2 * i)).collect::<Vec<_>>());
    cos::finalize();
}

//! Core costs next to the hardware floor: raw corosensei resume+suspend, the cos yield round
//! trip, and spawn+run+join of a trivial task.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;

fn floor(c: &mut Criterion) {
    use corosensei::{Coroutine, CoroutineResult};
    let mut co = Coroutine::<(), (), (), _>::new(|y, ()| loop {
        y.suspend(());
    });
    c.bench_function("floor: corosensei resume+suspend", |b| {
        b.iter(|| {
            let r = co.resume(());
            black_box(matches!(r, CoroutineResult::Yield(())));
        })
    });
}

fn yield_round_trip(c: &mut Criterion) {
    // One other task yields until told to stop; each main-program yield runs it once and comes
    // back: two switches, as in the floor's resume+suspend. It ends (and is joined) before the
    // next bench, which would otherwise pay for it on every switch.
    let stop = Rc::new(Cell::new(false));
    let flag = Rc::clone(&stop);
    let spinner = cos::spawn(move || {
        while !flag.get() {
            cos::yield_now();
        }
    })
    .unwrap();
    c.bench_function("cos: yield round trip", |b| b.iter(cos::yield_now));
    stop.set(true);
    cos::join(spinner).unwrap();
    assert_eq!(cos::task_count(), 1, "the yield bench leaves only the main program");
}

fn spawn_join(c: &mut Criterion) {
    c.bench_function("cos: spawn+run+join trivial task", |b| {
        b.iter(|| {
            let t = cos::spawn(|| black_box(1u64)).unwrap();
            black_box(cos::join(t).unwrap())
        })
    });
    c.bench_function("cos: spawn 1000 then join all", |b| {
        b.iter_batched(
            || (),
            |()| {
                for i in 0..1000u64 {
                    cos::spawn(move || i).unwrap();
                }
                while cos::join_any().unwrap().is_some() {}
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, floor, yield_round_trip, spawn_join);
criterion_main!(benches);

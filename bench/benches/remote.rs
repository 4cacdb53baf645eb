//! Dispatch throughput of trivial jobs on the thread machine with 1 and 2 workers, next to the
//! raw crossbeam channel round trip that every job makes at least once.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

static DOUBLE: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("double", |x| 2 * x);

/// Jobs in one measured dispatch.
const JOBS: u64 = 1_000;

fn channel_round_trip(c: &mut Criterion) {
    let (to_tx, to_rx) = crossbeam_channel::unbounded::<u64>();
    let (back_tx, back_rx) = crossbeam_channel::unbounded::<u64>();
    let echo = std::thread::spawn(move || {
        for x in to_rx {
            if back_tx.send(x).is_err() {
                break;
            }
        }
    });
    let mut g = c.benchmark_group("floor");
    g.throughput(Throughput::Elements(1));
    g.bench_function("crossbeam channel round trip", |b| {
        b.iter(|| {
            to_tx.send(black_box(1)).unwrap();
            black_box(back_rx.recv().unwrap())
        })
    });
    g.finish();
    drop(to_tx);
    echo.join().unwrap();
}

fn dispatch_thread_vm(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch trivial jobs");
    g.throughput(Throughput::Elements(JOBS));
    for workers in [1, 2] {
        let vm = cos::ThreadVm::builder(cos::Registry::new().with(&DOUBLE)).slots_per_host(workers).build();
        assert_eq!(cos::set_vm(vm), Ok(true));
        g.bench_function(format!("ThreadVm {workers} worker(s)"), |b| {
            b.iter(|| black_box(cos::dispatch((0..JOBS).map(|i| cos::job(&DOUBLE, i))).unwrap()))
        });
        cos::finalize();
    }
    g.finish();
}

criterion_group!(benches, channel_round_trip, dispatch_thread_vm);
criterion_main!(benches);

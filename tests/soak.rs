//! Soak: a million local tasks in nested trees and 100,000 remote jobs through `dispatch` on
//! worker threads, every result checked, and resident memory after a measured run within 16 MiB
//! of its level after the warm-up runs (so no stacks, tasks or messages are kept per task).
//!
//! Ignored by default; run in release mode:
//! `cargo test --release --test soak -- --ignored`.

use std::sync::Mutex;

use cos::{Registry, RemoteFn, ThreadVm};

/// Resident memory may grow this much between the warm-up run and the measured one.
const RSS_BOUND: u64 = 16 << 20;

/// Both soaks read the process's resident memory: they must not run at the same time.
static ALONE: Mutex<()> = Mutex::new(());

/// The process's resident memory in bytes (`VmRSS` of /proc/self/status).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a VmRSS figure");
    kib * 1024
}

/// Runs `f` on a new thread, so that it has a cooperative OS of its own, gone when it ends.
fn fresh<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

const FAN: u64 = 100;

/// 100 tasks, each spawning 100, each spawning 100 leaves: 1,010,100 tasks in all. Each task
/// joins its children in spawn order and returns the sum of their values; leaf `(a, b, c)`
/// returns `a * 10_000 + b * 100 + c`.
fn local_tree() -> u64 {
    let tops: Vec<_> = (0..FAN)
        .map(|a| {
            cos::spawn(move || {
                let mids: Vec<_> = (0..FAN)
                    .map(|b| {
                        cos::spawn(move || {
                            let leaves: Vec<_> = (0..FAN)
                                .map(|c| cos::spawn(move || a * 10_000 + b * 100 + c).unwrap())
                                .collect();
                            leaves.into_iter().map(|t| cos::join(t).unwrap()).sum::<u64>()
                        })
                        .unwrap()
                    })
                    .collect();
                mids.into_iter().map(|t| cos::join(t).unwrap()).sum::<u64>()
            })
            .unwrap()
        })
        .collect();
    let sum = tops.into_iter().map(|t| cos::join(t).unwrap()).sum();
    assert_eq!(cos::task_count(), 1, "only the main task is left");
    assert_eq!(cos::finished_tasks(), 0, "every task was joined");
    sum
}

#[test]
#[ignore = "soak: run in release mode with --ignored"]
fn a_million_local_tasks_in_nested_trees_leave_no_memory_behind() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let n = FAN * FAN * FAN;
    let expected = n * (n - 1) / 2;
    // The same OS thread for every run. Two warm-up runs: after the first, resident memory still
    // grows by about 10 MiB in the second (the allocator's heap settles), then stays flat.
    let (before, after) = fresh(move || {
        assert_eq!(local_tree(), expected);
        assert_eq!(local_tree(), expected);
        let before = rss();
        assert_eq!(local_tree(), expected);
        (before, rss())
    });
    eprintln!(
        "local soak: {} tasks per run; VmRSS {} KiB after warm-up, {} KiB after",
        n + FAN * FAN + FAN,
        before >> 10,
        after >> 10
    );
    assert!(after < before + RSS_BOUND, "resident memory grew from {before} to {after} bytes");
}

static MIX: RemoteFn<(u64, u64), u64> = RemoteFn::new("mix", |(i, x)| {
    let mut z = x ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 31)
});

fn mix(i: u64, x: u64) -> u64 {
    MIX.call((i, x))
}

const JOBS: u64 = 100_000;

/// 100,000 jobs through `dispatch` on a thread machine of 2 hosts with 2 slots each.
fn remote_jobs() {
    cos::set_vm(ThreadVm::builder(Registry::new().with(&MIX)).hosts(2).slots_per_host(2).build()).unwrap();
    let results = cos::dispatch((0..JOBS).map(|i| cos::job(&MIX, (i, 7)))).unwrap();
    cos::finalize();
    assert_eq!(results.len(), JOBS as usize);
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r, Ok(mix(i as u64, 7)), "job {i}");
    }
    assert_eq!(cos::task_count(), 1);
    assert_eq!(cos::finished_tasks(), 0);
}

#[test]
#[ignore = "soak: run in release mode with --ignored"]
fn a_hundred_thousand_remote_jobs_leave_no_memory_behind() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let (before, after) = fresh(|| {
        remote_jobs();
        let before = rss();
        remote_jobs();
        (before, rss())
    });
    eprintln!(
        "remote soak: {JOBS} jobs per run; VmRSS {} KiB after warm-up, {} KiB after",
        before >> 10,
        after >> 10
    );
    assert!(after < before + RSS_BOUND, "resident memory grew from {before} to {after} bytes");
}

//! Many tasks: 100,000 spawned and joined from the main program and from inside a task, and
//! 10,000 yielding tasks alive at the same time.

use std::cell::RefCell;
use std::rc::Rc;

/// Runs `f` on a new thread, so that it has a cooperative OS of its own.
fn fresh<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

const MANY: u64 = 100_000;

#[test]
fn spawn_then_join_100_000_tasks() {
    fresh(|| {
        let tasks: Vec<_> = (0..MANY).map(|i| cos::spawn(move || i * 3).unwrap()).collect();
        // Each ran to its end when spawned; all wait in the finished map.
        assert_eq!(cos::task_count(), 1);
        assert_eq!(cos::finished_tasks(), MANY as usize);
        let mut sum = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            let v = cos::join(t).unwrap();
            assert_eq!(v, i as u64 * 3);
            sum += v;
        }
        assert_eq!(sum, 3 * MANY * (MANY - 1) / 2);
        assert_eq!(cos::finished_tasks(), 0);
        assert!(cos::join_any().unwrap().is_none());
    });
}

#[test]
fn spawn_then_join_100_000_tasks_from_inside_a_task() {
    fresh(|| {
        let outer = cos::spawn(|| {
            let first = cos::spawn(|| 0u64).unwrap().tid();
            for i in 1..MANY {
                cos::spawn(move || i).unwrap();
            }
            assert_eq!(cos::finished_tasks(), MANY as usize);
            // join_any gives them back lowest tid first, so in spawn order.
            let mut sum = 0;
            let mut count = 0;
            while let Some(j) = cos::join_any().unwrap() {
                assert_eq!(j.tid.0, first.0 + count);
                let v = j.value::<u64>().unwrap();
                assert_eq!(v, count);
                sum += v;
                count += 1;
            }
            (count, sum)
        })
        .unwrap();
        assert_eq!(cos::join(outer).unwrap(), (MANY, MANY * (MANY - 1) / 2));
        assert_eq!(cos::task_count(), 1);
    });
}

#[test]
fn ten_thousand_yielding_tasks_in_turn() {
    const N: usize = 10_000;
    const ROUNDS: usize = 4;
    fresh(|| {
        // For every task, the rounds it has done, in the order it did them.
        let rounds: Rc<RefCell<Vec<Vec<usize>>>> = Rc::new(RefCell::new(vec![Vec::new(); N]));
        let mut tasks = Vec::with_capacity(N);
        for i in 0..N {
            let r = rounds.clone();
            tasks.push(
                cos::spawn(move || {
                    for round in 0..ROUNDS {
                        r.borrow_mut()[i].push(round);
                        cos::yield_now();
                    }
                    i
                })
                .unwrap(),
            );
            // Each spawn is a scheduling point: every ready task has one more turn before the
            // main program goes on, so a task ends at the ROUNDS-th spawn after its own.
            assert_eq!(cos::task_count(), 1 + ROUNDS.min(i + 1));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(cos::join(t).unwrap(), i);
        }
        assert!(rounds.borrow().iter().all(|r| *r == (0..ROUNDS).collect::<Vec<_>>()));
        assert_eq!(cos::task_count(), 1);
    });
}

/// Task `i` of a chain: spawns task `i + 1`, yields `rounds` times, then joins its child.
/// Every task of the chain waits for its child, so all of them are alive when the last runs.
fn chain(i: usize, n: usize, rounds: usize, log: Rc<RefCell<Vec<(usize, usize)>>>) -> (usize, usize) {
    let child = (i + 1 < n).then(|| {
        let l = log.clone();
        cos::spawn(move || chain(i + 1, n, rounds, l)).unwrap()
    });
    // Seen by the last task: every task of the chain plus the main program.
    let alive = cos::task_count();
    for round in 0..rounds {
        log.borrow_mut().push((i, round));
        cos::yield_now();
    }
    match child {
        Some(c) => {
            let (sum, peak) = cos::join(c).unwrap();
            (sum + i, peak)
        }
        None => (i, alive),
    }
}

#[test]
fn ten_thousand_yielding_tasks_alive_at_once() {
    const N: usize = 10_000;
    const ROUNDS: usize = 3;
    fresh(|| {
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let first = cos::spawn(move || chain(0, N, ROUNDS, l)).unwrap();
        let (sum, peak) = cos::join(first).unwrap();
        assert_eq!(sum, N * (N - 1) / 2);
        assert_eq!(peak, N + 1);
        // Every task did its rounds in order, and the rounds of different tasks interleave.
        let log = log.borrow();
        assert_eq!(log.len(), N * ROUNDS);
        let mut next = vec![0; N];
        for &(i, round) in log.iter() {
            assert_eq!(round, next[i]);
            next[i] += 1;
        }
        assert!(log.windows(2).any(|w| w[0].0 != w[1].0));
        assert_eq!(cos::task_count(), 1);
    });
}

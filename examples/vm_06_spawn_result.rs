//! Port of PyOPUS demo `demo/parallel/vm/06-spawn-result.py` (with `pyEvaluator` from its
//! `funclib.py`): one remote evaluator per expression sends its value back (PyOPUS
//! `sendBack=True`); an expression that cannot be evaluated gives no value (`[EVAL ERROR]`), and
//! the spawner prints every expression with its result.
//!
//! Run on worker threads, worker processes or MPI ranks:
//! `cargo run --example vm_06_spawn_result -- --vm thread` (or `--vm process`), or
//! `mpirun -n 3 target/release/examples/vm_06_spawn_result --vm mpi` (built with
//! `--features mpi`).

use std::collections::BTreeMap;

use cos::{Registry, RemoteFn, Spawn, Tid};

/// PyOPUS's `funclib.pyEvaluator`, for the demo's expressions: integers joined by `+`, `*` and
/// `**`; `None` for anything else (an unknown name, as `bla*bla`).
static EVALUATOR: RemoteFn<String, Option<i64>> = RemoteFn::new("evaluator", |expr| evaluate(&expr));

fn evaluate(expr: &str) -> Option<i64> {
    let sum = expr.split('+').map(|term| {
        let mut factors = term.split("**");
        let base = product(factors.next()?)?;
        factors.try_fold(base, |acc, exp| acc.checked_pow(u32::try_from(product(exp)?).ok()?))
    });
    sum.sum::<Option<i64>>()
}

fn product(s: &str) -> Option<i64> {
    s.split('*').map(|f| f.trim().parse::<i64>().ok()).product()
}

fn main() -> Result<(), cos::Error> {
    cos::start(Registry::new().with(&EVALUATOR))?;
    let exprs = ["1+1", "5*5", "bla*bla", "2**7"];

    let mut running = BTreeMap::<Tid, usize>::new();
    for (i, expr) in exprs.iter().enumerate() {
        println!("Spawning evaluator for: {expr}");
        let s = Spawn::new(&EVALUATOR, expr.to_string()).start()?;
        match s.task_id {
            Some(id) => println!("  Task ID: {id}"),
            None => println!("  Task ID: none yet (waits for a slot)"),
        }
        running.insert(s.task.tid(), i);
    }
    println!();

    // Collect the results as the evaluators end.
    let mut results: Vec<Option<Option<i64>>> = vec![None; exprs.len()];
    while !running.is_empty() {
        let Some(joined) = cos::join_any()? else { break };
        let Some(i) = running.remove(&joined.tid) else { continue };
        results[i] = Some(joined.value::<Option<i64>>().ok().flatten());
    }

    for (expr, result) in exprs.iter().zip(results) {
        match result {
            Some(Some(v)) => println!("{expr}={v}"),
            Some(None) => println!("{expr}=[EVAL ERROR]"),
            None => println!("{expr}=[NOT SPAWNED]"),
        }
    }
    cos::finalize();
    Ok(())
}

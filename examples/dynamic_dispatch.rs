//! Port of PyOPUS demo `demo/parallel/cooperative/04-dyndispatch.py`: jobs come from an endless
//! generator (values 0, 1, 2, ... to double) and are dispatched over the machine's free slots;
//! a collector stores each result and stops the generator once a result reaches 150. The jobs
//! still running then are collected too, and the collected results are printed at the end.
//!
//! Run with `cargo run --example dynamic_dispatch` (worker threads, the embedded default).

use std::ops::ControlFlow;

use cos::{Dispatch, Registry, RemoteFn};

/// The result at which the collector stops the generator.
const STOP_AT_RESULT: u64 = 150;

/// PyOPUS's `jobProcessor`: doubles its value.
static JOB_PROCESSOR: RemoteFn<u64, u64> = RemoteFn::new("job_processor", |value| {
    let place = std::thread::current().name().unwrap_or("spawner").to_string();
    println!("Processing {value} on {place}");
    2 * value
});

fn main() -> Result<(), cos::Error> {
    // Worker threads by default; `--vm process` or `--vm mpi` (or COS_VM) chooses another machine.
    cos::start(Registry::new().with(&JOB_PROCESSOR))?;

    // The endless job generator: start at 0, step 1.
    let (start, step) = (0u64, 1u64);
    let value_of = |index: usize| start + index as u64 * step;
    let jobs = (0..).map(|index| cos::job(&JOB_PROCESSOR, value_of(index)));

    // The collector fills this list; with a collector, dispatch builds no result list of its own.
    let mut results: Vec<Option<u64>> = Vec::new();
    let mut stopped = false;
    Dispatch::new(jobs)
        .remote(true)
        .collector(|c| {
            // The job's own argument, as PyOPUS's collector reads it from the job it receives.
            let value: u64 = c.args().unwrap_or_else(|_| value_of(c.index));
            let result = match c.result {
                Ok(r) => *r,
                Err(e) => {
                    println!("Job for value={value} failed: {e}");
                    return ControlFlow::Continue(());
                }
            };
            println!("Result for value={value} is {result}");
            if results.len() <= c.index {
                results.resize(c.index + 1, None);
            }
            results[c.index] = Some(result);
            if result >= STOP_AT_RESULT && !stopped {
                println!("Result {STOP_AT_RESULT} reached, stopping generator.");
                stopped = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
        .run()?;

    // Post-processing, once every job is collected (PyOPUS's collector on GeneratorExit).
    println!("Collector finished");
    let results: Vec<u64> =
        results.into_iter().map(|r| r.expect("every dispatched job is collected")).collect();
    println!("Results: {results:?}");

    cos::finalize();
    Ok(())
}

//! Port of PyOPUS demo `demo/parallel/cooperative/03-dispatch.py`: 100 jobs, each doubling its
//! index, dispatched over the machine's free slots; the results come back in job order.
//!
//! Run with `cargo run --release --example dispatch` (worker threads, the embedded default).

static JOB_PROCESSOR: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("job_processor", |value| 2 * value);

fn main() -> Result<(), cos::Error> {
    let registry = cos::Registry::new().with(&JOB_PROCESSOR);
    // Worker threads by default; `--vm process` or `--vm mpi` (or COS_VM) chooses another machine.
    cos::start(registry)?;

    let results = cos::dispatch((0..100).map(|i| cos::job(&JOB_PROCESSOR, i)))?;
    let results: Vec<u64> = results.into_iter().collect::<Result<_, _>>()?;
    println!("Results: {results:?}");

    cos::finalize();
    Ok(())
}

//! Port of PyOPUS demo `demo/parallel/cooperative/05-asyncloop.py`: the dynamic dispatch of
//! demo 04 written as a custom asynchronous loop, the way asynchronous parallel optimization
//! algorithms (DE, PSADE) are built. The loop spawns jobs while slots are free, joins whichever
//! job finishes, spawns a new one for each result, stops spawning once a result reaches 150,
//! and joins the jobs still running.
//!
//! Run with `cargo run --example async_loop` (worker threads, the embedded default).

use std::collections::HashMap;

use cos::{Registry, RemoteFn, Tid};

/// The result at which no more jobs are spawned.
const STOP_AT_RESULT: u64 = 150;
/// At least this many jobs run at a time, whatever the free slots.
const MIN_TASKS: usize = 1;
/// At most this many jobs run at a time.
const MAX_TASKS: usize = 1000;

/// PyOPUS's `jobProcessor`: doubles its value.
static JOB_PROCESSOR: RemoteFn<u64, u64> = RemoteFn::new("job_processor", |value| {
    let place = std::thread::current().name().unwrap_or("spawner").to_string();
    println!("Processing {value} on {place}");
    2 * value
});

fn main() -> Result<(), cos::Error> {
    // Worker threads by default; `--vm process` or `--vm mpi` (or COS_VM) chooses another machine.
    cos::start(Registry::new().with(&JOB_PROCESSOR))?;

    // Running jobs by tid: their index (the job is the value to double, equal to the index).
    let mut running: HashMap<Tid, usize> = HashMap::new();
    let mut results: Vec<Option<u64>> = Vec::new();
    let mut at_job = 0usize;
    let mut stop = false;

    // Run until the stop flag is set and every job is joined.
    while !(stop && running.is_empty()) {
        // Spawn while there are no jobs, too few jobs, or free slots (beyond the finished,
        // unjoined jobs) and fewer than the maximum.
        while !stop
            && (running.is_empty()
                || (cos::slots().is_some() && running.len() < MIN_TASKS)
                || (cos::free_slots().unwrap_or(0) > cos::finished_tasks() && running.len() < MAX_TASKS))
        {
            let job = at_job as u64;
            let task = cos::spawn_remote(&JOB_PROCESSOR, job)?;
            println!("Spawned task {} for job {job}", task.tid());
            running.insert(task.tid(), at_job);
            at_job += 1;
        }

        // Join one job, whichever finished first.
        let Some(joined) = cos::join_any()? else { break };
        let tid = joined.tid;
        let index = running.remove(&tid).expect("every child is a job of this loop");
        let result = joined.value::<u64>()?;
        println!("Received {result} from {tid}");

        if index >= results.len() {
            results.resize(index + 1, None);
        }
        results[index] = Some(result);

        if result >= STOP_AT_RESULT && !stop {
            stop = true;
            println!("Spawning no more tasks");
        }
    }

    let results: Vec<u64> = results.into_iter().map(|r| r.expect("every spawned job is joined")).collect();
    println!("Results: {results:?}");

    cos::finalize();
    Ok(())
}

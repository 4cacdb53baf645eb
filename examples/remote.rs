//! Port of PyOPUS demo `demo/parallel/cooperative/02-remote.py`: two tasks are spawned locally
//! and two remotely; each prints a message a number of times, and the main program joins them
//! as they finish. For every task the main program shows where it runs: its tid, its task id in
//! the machine and its host (PyOPUS's extended return value).
//!
//! Run with `cargo run --example remote` (worker threads on two simulated hosts, the embedded
//! default machine; no setup needed).

use std::collections::BTreeSet;

use cos::{Registry, RemoteFn, Spawn, ThreadVm};

/// PyOPUS's `printMsgMPI`: prints `msg : i` for i in 0..n, naming the thread it runs on,
/// yielding after each line, and returns n.
static PRINT_MSG: RemoteFn<(String, u32), u32> = RemoteFn::new("print_msg", |(msg, n)| {
    let place = std::thread::current().name().unwrap_or("spawner").to_string();
    for i in 0..n {
        println!("{place}: {msg} : {i}");
        cos::yield_now();
    }
    n
});

fn main() -> Result<(), cos::Error> {
    let registry = Registry::new().with(&PRINT_MSG);
    cos::set_vm(ThreadVm::builder(registry).hosts(2).slots_per_host(1).build())?;

    // Two local tasks, then two remote ones.
    let a = Spawn::new(&PRINT_MSG, ("Hello A".to_string(), 10)).remote(false).start()?;
    let b = Spawn::new(&PRINT_MSG, ("Hello B".to_string(), 20)).remote(false).start()?;
    let c = Spawn::new(&PRINT_MSG, ("Hello C".to_string(), 15)).remote(true).start()?;
    let d = Spawn::new(&PRINT_MSG, ("Hello D".to_string(), 18)).remote(true).start()?;

    let mut running = BTreeSet::new();
    for (name, s) in [("A", &a), ("B", &b), ("C", &c), ("D", &d)] {
        let task_id = s.task_id.map_or("none (local)".to_string(), |t| t.to_string());
        let host = s.host.as_ref().map_or("none (local)".to_string(), |h| h.to_string());
        println!("Task {name}: tid {}, task id {task_id}, host {host}", s.task.tid());
        running.insert(s.task.tid());
    }

    // Wait for all tasks to finish, whichever ends first (`cos::join_list(&tids, true)` would
    // wait for listed ones only).
    while !running.is_empty() {
        if let Some(joined) = cos::join_any()? {
            running.remove(&joined.tid);
            let tid = joined.tid;
            println!("Task: {tid} finished, return value: {}", joined.value::<u32>()?);
        }
    }

    cos::finalize();
    Ok(())
}

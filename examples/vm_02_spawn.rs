//! Port of PyOPUS demo `demo/parallel/vm/02-spawn.py` (with `hello` from its `funclib.py`):
//! spawns two remote tasks anywhere, each says where it runs (its task id and host, PyOPUS's
//! `vm.taskID()` and `vm.hostID()`), and the spawner collects their results until every slot
//! is free again, printing the machine's layout (`formatSpawnerConfig`) before and after.
//!
//! Run on worker threads, worker processes or MPI ranks:
//! `cargo run --example vm_02_spawn -- --vm thread` (or `--vm process`), or
//! `mpirun -n 3 target/release/examples/vm_02_spawn --vm mpi` (built with `--features mpi`).

use cos::{Registry, RemoteFn, Spawn};

/// PyOPUS's `funclib.hello`: prints and returns who and where it is.
static HELLO: RemoteFn<(), String> = RemoteFn::new("hello", |()| {
    let me = cos::remote_task().expect("hello runs as a remote task");
    println!("Worker {} at {}.", me.task, me.host);
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    format!("Hello, I am worker {} on {} in {cwd}.", me.task, me.host)
});

fn main() -> Result<(), cos::Error> {
    let machine = cos::start(Registry::new().with(&HELLO))?;
    println!("Machine: {machine}");

    let initial_free = cos::free_slots().unwrap_or(0);
    println!("Hosts: ");
    for host in cos::hosts() {
        println!("  {host}");
    }
    println!("Free slots: {initial_free}");

    println!("\nSpawning 2 tasks, anywhere.");
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let s = Spawn::new(&HELLO, ()).start()?;
        let id = s.task_id.expect("a remote task: the machine has free slots");
        tasks.push((id, s.task));
    }
    println!("Spawned: ");
    for (id, _) in &tasks {
        println!("   {id}");
    }
    println!("Free slots: {}\n", cos::free_slots().unwrap_or(0));
    print!("----\n{}----\n", cos::format_spawner_config());

    // Each join is the task's result and its end (PyOPUS's MsgTaskResult and MsgTaskExit).
    for (id, task) in tasks {
        match cos::join(task) {
            Ok(value) => println!("Received from {id} TaskResult success=True\n  {value}"),
            Err(e) => println!("Received from {id} TaskResult success=False\n  {e}"),
        }
        println!("Received from {id} TaskExit");
        println!("Free slots: {}\n", cos::free_slots().unwrap_or(0));
    }
    assert_eq!(cos::free_slots(), Some(initial_free), "every slot is free again");
    print!("----\n{}----\n", cos::format_spawner_config());

    cos::finalize();
    Ok(())
}

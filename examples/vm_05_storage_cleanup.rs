//! Port of PyOPUS demo `demo/parallel/vm/05-storage-cleanup.py` (mirrored storage cleanup):
//! the spawner clears the local storage of every host of its machine, and its own, with a
//! timeout (PyOPUS's `vm.clearLocalStorage(timeout=6.0)`).
//!
//! To have something to clear, the port first runs one task per host with persistent storage
//! (kept after the tasks, as PyOPUS's `persistentStorage=True`), then clears, and shows what
//! `PARALLEL_LOCAL_STORAGE/cos-<user>` on the spawner's host holds before and after. When
//! `PARALLEL_LOCAL_STORAGE` is unset, the port uses a directory of its own in the temporary
//! directory (the same for every process of the run), so that it clears no other program's
//! task storage.
//!
//! ```text
//! cargo run --release --example vm_05_storage_cleanup                 # worker threads
//! cargo run --release --example vm_05_storage_cleanup -- --vm process # worker processes
//! cargo build --release --features mpi --example vm_05_storage_cleanup
//! mpirun -n 3 target/release/examples/vm_05_storage_cleanup --vm mpi  # MPI ranks
//! ```

use std::time::Duration;

use cos::{EnvironmentSpec, Registry, RemoteFn, Spawn, StartOptions};

/// Leaves a file in the task's persistent storage.
static LEAVE_A_FILE: RemoteFn<(), String> = RemoteFn::new("leave_a_file", |()| {
    let dir = cos::task_storage().expect("persistent storage");
    std::fs::write(dir.join("results.raw"), "simulator output").expect("storage is writable");
    dir.display().to_string()
});

/// The entries of this host's local storage root.
fn storage_entries() -> usize {
    std::fs::read_dir(cos::local_storage_root()).map_or(0, Iterator::count)
}

fn main() -> Result<(), cos::Error> {
    if std::env::var_os("PARALLEL_LOCAL_STORAGE").is_none() {
        std::env::set_var("PARALLEL_LOCAL_STORAGE", std::env::temp_dir().join("cos-vm-05-storage-cleanup"));
    }
    let spec = EnvironmentSpec::new().persistent(true);
    let machine =
        cos::start_with(Registry::new().with(&LEAVE_A_FILE), StartOptions::new().environment(spec))?;
    println!("Machine: {machine}, hosts {:?}", cos::hosts());

    for host in cos::hosts() {
        let dir = cos::join(Spawn::new(&LEAVE_A_FILE, ()).host(host.clone()).start()?.task)?;
        println!("Task on {host} kept {dir}");
    }
    let before = storage_entries();
    println!("Local storage entries on the spawner's host before: {before}");

    // Clean up local storage on all machines in the virtual machine.
    println!("\nCleaning up.");
    cos::clear_local_storage_everywhere(Duration::from_secs_f64(6.0))?;
    let after = storage_entries();
    println!("Local storage entries on the spawner's host after: {after}");
    cos::finalize();
    if after != 0 {
        eprintln!("local storage is not empty after clearing");
        std::process::exit(1);
    }
    Ok(())
}

//! Port of PyOPUS demo `demo/parallel/vm/04-mirror.py` (file mirroring): the machine is made
//! with a mirror map, `{'*': '.'}` in PyOPUS, that copies every file and directory of a
//! directory on the mirrored share into each task's local storage before the function runs;
//! one task is spawned, prints where it runs and lists its working directory (PyOPUS's
//! `funclib.helloLs`), and the spawner waits for its end.
//!
//! The mirrored directory is `examples/data/vm_04_mirror` (a file, and a directory holding a
//! file and a symbolic link, which arrives as a link). When `PARALLEL_MIRRORED_STORAGE` is
//! unset, `examples/data` is made the share, for this program and its workers alike.
//!
//! ```text
//! cargo run --release --example vm_04_mirror                 # worker threads
//! cargo run --release --example vm_04_mirror -- --vm process # worker processes
//! cargo build --release --features mpi --example vm_04_mirror
//! mpirun -n 3 target/release/examples/vm_04_mirror --vm mpi  # MPI ranks
//! ```

use std::path::{Path, PathBuf};

use cos::{EnvironmentSpec, MirrorEntry, Registry, RemoteFn, StartOptions};
use serde::{Deserialize, Serialize};

/// What `helloLs` saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Listing {
    greeting: String,
    dirs: Vec<String>,
    files: Vec<String>,
    links: Vec<String>,
}

/// Lists `dir`: directories, files and symbolic links, sorted.
fn list(dir: &Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut dirs, mut files, mut links) = (Vec::new(), Vec::new(), Vec::new());
    let mut walk = vec![PathBuf::new()];
    while let Some(rel) = walk.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else { continue };
        for entry in entries.flatten() {
            let name = rel.join(entry.file_name());
            let shown = name.to_string_lossy().into_owned();
            match entry.file_type() {
                Ok(t) if t.is_symlink() => links.push(shown),
                Ok(t) if t.is_dir() => {
                    dirs.push(shown);
                    walk.push(name);
                }
                _ => files.push(shown),
            }
        }
    }
    dirs.sort();
    files.sort();
    links.sort();
    (dirs, files, links)
}

/// PyOPUS's `funclib.helloLs`: says where it runs and lists its working directory.
static HELLO_LS: RemoteFn<(), Listing> = RemoteFn::new("hello_ls", |()| {
    let wd = cos::task_working_dir().expect("a mirror map gives the task a directory");
    let greeting = format!("Hello, I am process {} in {}.", std::process::id(), wd.display());
    println!("{greeting}");
    let (dirs, files, links) = list(&wd);
    println!("Dirs      : {dirs:?}");
    println!("Files     : {files:?}");
    println!("Links     : {links:?}");
    Listing { greeting, dirs, files, links }
});

fn main() -> Result<(), cos::Error> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    if std::env::var_os("PARALLEL_MIRRORED_STORAGE").is_none() {
        std::env::set_var("PARALLEL_MIRRORED_STORAGE", &data);
    }
    // Mirror everything in the demo's directory to the task's storage: PyOPUS's {'*': '.'}.
    let spec = EnvironmentSpec::new().mirror(MirrorEntry::new(data.join("vm_04_mirror/*"), "")?);
    let machine = cos::start_with(Registry::new().with(&HELLO_LS), StartOptions::new().environment(spec))?;
    println!("Machine: {machine}, hosts {:?}", cos::hosts());

    println!("\nSpawning task.");
    let spawned = cos::Spawn::new(&HELLO_LS, ()).start()?;
    println!("Spawned: task {:?} on {:?}", spawned.task_id, spawned.host);
    println!("Collecting the result ...");
    let listing = cos::join(spawned.task)?;
    println!("{}", listing.greeting);
    println!("Dirs  : {:?}\nFiles : {:?}\nLinks : {:?}", listing.dirs, listing.files, listing.links);
    cos::finalize();

    let expected = (
        vec!["dummydir".to_string()],
        vec!["dummydir/dummyfile".to_string(), "netlist.cir".to_string()],
        vec!["dummydir/link".to_string()],
    );
    if (listing.dirs, listing.files, listing.links) != expected {
        eprintln!("the task's storage does not hold the mirrored directory: expected {expected:?}");
        std::process::exit(1);
    }
    Ok(())
}

//! Port of PyOPUS demo `demo/parallel/vm/03-messaging.py` (with `bounceBack` from its
//! `funclib.py`): a remote task on another host than the spawner's (when there is one) sends
//! every message it gets back to the spawner, and the spawner measures the round trip and the
//! throughput for messages of growing size. A `None` message ends the task.
//!
//! Run on worker threads, worker processes or MPI ranks:
//! `cargo run --release --example vm_03_messaging -- --vm thread` (or `--vm process`), or
//! `mpirun -n 3 target/release/examples/vm_03_messaging --vm mpi` (built with `--features mpi`).
//! `--quick` measures fewer sizes for a shorter time.

use std::time::{Duration, Instant};

use cos::{Registry, RemoteFn, Spawn};

/// PyOPUS's `funclib.bounceBack`: sends every message back to the spawner until `None`.
static BOUNCE_BACK: RemoteFn<(), u64> = RemoteFn::new("bounce_back", |()| {
    let mut bounced = 0;
    loop {
        match cos::receive_message::<Option<Vec<u8>>>(None) {
            Ok(Some((from, Some(data)))) => {
                cos::send_message(from, &Some(data)).expect("the spawner is there");
                bounced += 1;
            }
            Ok(Some((_, None))) | Ok(None) => return bounced,
            Err(e) => panic!("cannot receive: {e}"),
        }
    }
});

fn main() -> Result<(), cos::Error> {
    cos::start(Registry::new().with(&BOUNCE_BACK))?;
    let quick = std::env::args().any(|a| a == "--quick");

    // A host other than the spawner's, if there is one.
    let mine = cos::with_vm(|vm| vm.host_id(None)).flatten();
    let hosts = cos::hosts();
    let target = hosts.iter().find(|h| Some(*h) != mine.as_ref()).or(hosts.first()).cloned();
    let Some(host) = target else {
        println!("Failed to spawn bounceBack(): no hosts.");
        std::process::exit(1);
    };
    if Some(&host) == mine.as_ref() {
        println!("\nWarning. Measuring local communication speed.");
    }

    let spawned = Spawn::new(&BOUNCE_BACK, ()).host(host.clone()).start()?;
    let Some(task) = spawned.task_id else {
        println!("Failed to spawn bounceBack().");
        std::process::exit(1);
    };
    println!("Task layout:");
    print!("{}", cos::format_spawner_config());
    println!("Measuring message delivery time and data throughput to {host}.");
    println!("Bounce back task: {task}");

    let sizes: &[usize] =
        if quick { &[0, 1, 1000, 100_000] } else { &[0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000] };
    let run_for = if quick { Duration::from_millis(50) } else { Duration::from_secs(1) };
    for &size in sizes {
        let data: Vec<u8> = (0..size).map(|i| (i * 131 % 256) as u8).collect();
        let round_trip = |n: u32| -> Result<Duration, cos::Error> {
            let start = Instant::now();
            for _ in 0..n {
                cos::send_message(task, &Some(&data))?;
                match cos::receive_message::<Option<Vec<u8>>>(Some(Duration::from_secs(60)))? {
                    Some((from, Some(back))) if from == task && back.len() == size => {}
                    other => panic!("unexpected answer {:?}", other.map(|(f, m)| (f, m.map(|m| m.len())))),
                }
            }
            Ok(start.elapsed())
        };
        // Warm up, then as many round trips as fit in `run_for`.
        let probe = round_trip(10)?;
        let repeats = ((run_for.as_secs_f64() / (probe.as_secs_f64() / 10.0)) as u32).clamp(1, 100_000);
        let total = round_trip(repeats)?;
        let dt = total.as_secs_f64() / 2.0 / f64::from(repeats);
        let mbps = size as f64 * 8.0 / dt / 1e6;
        println!(
            "Data size {:9.3}kB, iterations={repeats:6}, time={:7.0}us, speed={mbps:5.3}Mb/s",
            size as f64 / 1000.0,
            dt * 1e6
        );
    }

    // None ends the task; its end comes with its value.
    cos::send_message(task, &None::<Vec<u8>>)?;
    let bounced = cos::join(spawned.task)?;
    println!("The task bounced {bounced} messages back.");
    cos::finalize();
    Ok(())
}

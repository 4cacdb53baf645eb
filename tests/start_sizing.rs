//! `cos::start_with` sizes the thread machine from `COS_SLOTS` / `COS_HOSTS` and from
//! `StartOptions`, the environment winning over the code, and refuses a size of 0 with a typed
//! error. (The command-line forms `--slots` / `--hosts` are covered by the unit tests in
//! `src/machines/select.rs`: a test binary's own arguments belong to the test harness.)

use cos::{Error, Machine, MachineErrorKind, Registry, RemoteFn, StartOptions};

static DOUBLE: RemoteFn<u64, u64> = RemoteFn::new("double", |x| 2 * x);

/// Starts the machine in a fresh thread with `options`, and reports its slots, its hosts and
/// one job's result, or the error of `start_with`.
fn started(options: StartOptions) -> Result<(Option<usize>, usize, u64), Error> {
    std::thread::spawn(move || {
        let machine = cos::start_with(Registry::new().with(&DOUBLE), options)?;
        assert_eq!(machine, Machine::Thread);
        let doubled = cos::dispatch_single(cos::job(&DOUBLE, 21))?;
        let size = (cos::slots(), cos::hosts().len(), doubled);
        cos::finalize();
        Ok(size)
    })
    .join()
    .expect("start_with does not panic")
}

fn is_config(r: &Result<(Option<usize>, usize, u64), Error>) -> bool {
    matches!(r, Err(Error::Vm(e)) if e.kind() == MachineErrorKind::Config)
}

// One test: the environment is the process's, so the cases run one after another.
#[test]
fn the_thread_machine_is_sized_by_the_environment_and_the_code() {
    std::env::remove_var("COS_VM");

    // The code's size, with nothing in the environment: 2 hosts of 3 workers, plus the spawner.
    std::env::remove_var("COS_SLOTS");
    std::env::remove_var("COS_HOSTS");
    assert_eq!(started(StartOptions::new().slots_per_host(3).hosts(2)), Ok((Some(7), 2, 42)));

    // The environment wins over the code.
    std::env::set_var("COS_SLOTS", "2");
    assert_eq!(started(StartOptions::new().slots_per_host(5)), Ok((Some(3), 1, 42)));
    std::env::set_var("COS_HOSTS", "3");
    assert_eq!(started(StartOptions::new().slots_per_host(5).hosts(1)), Ok((Some(7), 3, 42)));

    // A bad size is a typed error, and no machine is set.
    std::env::set_var("COS_SLOTS", "0");
    assert!(is_config(&started(StartOptions::new())));
    std::env::set_var("COS_SLOTS", "four");
    assert!(is_config(&started(StartOptions::new())));
    std::env::remove_var("COS_SLOTS");
    std::env::remove_var("COS_HOSTS");
    assert!(is_config(&started(StartOptions::new().hosts(0))));
    let none = std::thread::spawn(|| {
        let _ = cos::start_with(Registry::new().with(&DOUBLE), StartOptions::new().slots_per_host(0));
        cos::slots()
    });
    assert_eq!(none.join().unwrap(), None);
}

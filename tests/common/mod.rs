//! Helpers shared by the test programs: the machines a behaviour's body runs on, the check
//! runner of the programs that have their own `main`, and a look into remote failures.
#![allow(dead_code)]

use std::panic::{self, AssertUnwindSafe};

use cos::{
    EnvironmentSpec, Error, ProcessVm, Registry, RemoteCall, RemoteErrorKind, SimVm, ThreadVm,
    VirtualMachine, Wait,
};

/// A machine a behaviour is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// [`SimVm`], seed 0.
    Sim,
    /// [`ThreadVm`].
    Thread,
    /// [`ProcessVm`] (only in the programs that call `cos::start` first, with their own `main`).
    Process,
}

impl On {
    /// The machine named `name` (`sim`, `thread` or `process`).
    pub fn named(name: &str) -> On {
        match name {
            "sim" => On::Sim,
            "thread" => On::Thread,
            "process" => On::Process,
            other => panic!("no machine {other}"),
        }
    }

    /// Sets this machine with `hosts` hosts of `per_host` worker slots each.
    pub fn set(self, registry: Registry, hosts: usize, per_host: usize) {
        let set = match self {
            On::Sim => cos::set_vm(SimVm::new(registry, hosts, per_host)),
            On::Thread => {
                cos::set_vm(ThreadVm::builder(registry).hosts(hosts).slots_per_host(per_host).build())
            }
            On::Process => cos::set_vm(
                ProcessVm::builder(registry)
                    .hosts(hosts)
                    .slots_per_host(per_host)
                    .build()
                    .expect("worker processes"),
            ),
        };
        assert_eq!(set, Ok(true), "{self:?} machine set");
    }

    /// Sets this machine with `hosts` hosts of `per_host` worker slots each, whose remote tasks
    /// run in the environment `spec`.
    pub fn set_with(self, registry: Registry, hosts: usize, per_host: usize, spec: EnvironmentSpec) {
        let set = match self {
            On::Sim => cos::set_vm(SimVm::new(registry, hosts, per_host).environment(spec).expect("valid")),
            On::Thread => cos::set_vm(
                ThreadVm::builder(registry)
                    .hosts(hosts)
                    .slots_per_host(per_host)
                    .environment(spec)
                    .expect("valid")
                    .build(),
            ),
            On::Process => cos::set_vm(
                ProcessVm::builder(registry)
                    .hosts(hosts)
                    .slots_per_host(per_host)
                    .environment(spec)
                    .expect("valid")
                    .build()
                    .expect("worker processes"),
            ),
        };
        assert_eq!(set, Ok(true), "{self:?} machine set");
    }

    /// This machine, not set: for tests that drive a machine directly, as PyOPUS programs drive
    /// their `VirtualMachine`.
    pub fn machine(self, registry: Registry, hosts: usize, per_host: usize) -> Box<dyn VirtualMachine> {
        match self {
            On::Sim => Box::new(SimVm::new(registry, hosts, per_host)),
            On::Thread => Box::new(ThreadVm::builder(registry).hosts(hosts).slots_per_host(per_host).build()),
            On::Process => Box::new(
                ProcessVm::builder(registry)
                    .hosts(hosts)
                    .slots_per_host(per_host)
                    .build()
                    .expect("worker processes"),
            ),
        }
    }

    /// Whether a spawned task's end is known not to come before the spawner waits (on
    /// [`SimVm`] it lies in the virtual future; elsewhere it may come at once).
    pub fn settled(self) -> bool {
        self == On::Sim
    }
}

/// Runs `body` on each machine in turn, finalizing the machine after each, and says on which
/// machine a failure happened.
pub fn on_each(machines: &[On], body: impl Fn(On)) {
    for &m in machines {
        let r = panic::catch_unwind(AssertUnwindSafe(|| body(m)));
        cos::finalize();
        if let Err(p) = r {
            eprintln!("failed on the {m:?} machine");
            panic::resume_unwind(p);
        }
    }
}

/// One `#[test]` per machine for a behaviour: `machine_test!(name, [sim, thread], |on| { .. })`
/// makes `name::sim` and `name::thread`, each running the body with `on` set to its machine
/// and finalizing the machine afterwards.
#[macro_export]
macro_rules! machine_test {
    ($name:ident, [$($on:ident),+], |$m:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $on() {
                    let $m = $crate::common::On::named(stringify!($on));
                    $crate::common::on_each(&[$m], |$m| $body);
                }
            )+
        }
    };
}

/// PyOPUS demo `vm/02-spawn.py` on a machine driven directly: a task on every free slot, then
/// events until `free_slots()` is back at its start value. Every task's end must have come by
/// then (a slot is free only once its task has ended), each exactly once.
pub fn a_free_slot_loop_sees_every_end(vm: &mut dyn VirtualMachine, call: &RemoteCall) {
    let start = vm.free_slots();
    assert!(start > 0);
    let mut started = Vec::new();
    while vm.free_slots() > 0 {
        started.push(vm.spawn_function(call, None).expect("a free slot takes a task"));
    }
    let mut ended = Vec::new();
    while vm.free_slots() < start {
        match vm.receive(Wait::Forever).expect("the machine works") {
            Some(e) => ended.push(e.task()),
            None => panic!("no event while {} slots are busy", start - vm.free_slots()),
        }
    }
    started.sort();
    ended.sort();
    assert_eq!(ended, started, "every task ended once before the slots were free again");
    assert!(vm.receive(Wait::Poll).expect("the machine works").is_none(), "nothing comes after the ends");
    vm.finalize();
}

/// The kind and message of a remote failure, if `r` is one.
pub fn remote_failure<T>(r: &Result<T, Error>) -> Option<(RemoteErrorKind, &str)> {
    match r {
        Err(Error::Remote(e)) => Some((e.kind, e.message.as_str())),
        _ => None,
    }
}

/// Gives this test program (and the worker processes it starts, which inherit it) local and
/// mirrored storage of its own under the temporary directory, unless they are set already (as
/// in a worker); returns `(local, mirrored)`.
pub fn private_storage(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    if std::env::var_os("PARALLEL_LOCAL_STORAGE").is_none() {
        let base = std::env::temp_dir().join(format!("cos-test-{name}-{}", std::process::id()));
        std::env::set_var("PARALLEL_LOCAL_STORAGE", base.join("local"));
        std::env::set_var("PARALLEL_MIRRORED_STORAGE", base.join("share"));
    }
    let local = std::path::PathBuf::from(std::env::var_os("PARALLEL_LOCAL_STORAGE").unwrap());
    let share = std::path::PathBuf::from(std::env::var_os("PARALLEL_MIRRORED_STORAGE").unwrap());
    (local, share)
}

/// Whether the process `pid` exists (a zombie does).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Makes this process the reaper of orphaned descendants, so that a simulator's child whose
/// parent was killed is reparented here, reaped by [`assert_gone`] and then checked by pid.
pub fn become_subreaper() {
    // SAFETY: prctl(2) PR_SET_CHILD_SUBREAPER takes one integer argument.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
}

/// Waits (bounded) for `pid` to end, reaps it when it was reparented to this process, and
/// checks that the pid is gone.
pub fn assert_gone(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes the status into `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid || (rc < 0 && !alive(pid)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "process {pid} still runs");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(!alive(pid), "process {pid} still exists");
}

/// Runs each check, finalizing the machine after each, prints a line per check and the closing
/// `N passed, M failed` line, and exits non-zero when a check failed.
pub fn run_checks(checks: &[(&str, fn())]) {
    let mut failed = 0;
    for (name, check) in checks {
        let ok = panic::catch_unwind(AssertUnwindSafe(check)).is_ok();
        cos::finalize();
        println!("check {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    println!("{} passed, {failed} failed", checks.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Runs `check`, and fails the program (a `check what ... FAILED` line, exit 1) when it has not
/// returned within `limit`: a check of something that used to hang fails instead of hanging.
pub fn with_watchdog(limit: std::time::Duration, what: &'static str, check: impl FnOnce()) {
    let (done, watched) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watched.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            println!("check {what} ... FAILED: still waiting after {limit:?}");
            std::process::exit(1);
        }
    });
    check();
    let _ = done.send(());
    watchdog.join().unwrap();
}

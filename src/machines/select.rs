//! The program's entry call: become a worker, or choose and set the machine.

use std::ffi::OsString;
use std::fmt;
use std::str::FromStr;

use crate::environment::EnvironmentSpec;
use crate::error::Error;
use crate::machines::process::{is_worker_process, worker_main};
use crate::machines::setup::validated;
use crate::machines::{ProcessVm, ThreadVm};
use crate::vm::Registry;
use crate::vm::{machine, MachineErrorKind};

/// The environment variable that names the machine when the command line does not.
const VM_ENV: &str = "COS_VM";
/// The environment variable with the worker slots per host when `--slots` is not given.
const SLOTS_ENV: &str = "COS_SLOTS";
/// The environment variable with the number of hosts when `--hosts` is not given.
const HOSTS_ENV: &str = "COS_HOSTS";

/// A kind of machine that [`start`] can set up.
///
/// ```
/// let m: cos::Machine = "process".parse().unwrap();
/// assert_eq!(m, cos::Machine::Process);
/// assert_eq!(m.to_string(), "process");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Machine {
    /// [`ThreadVm`]: worker threads in this process (the default).
    #[default]
    Thread,
    /// [`ProcessVm`]: worker processes, this program started again.
    Process,
    /// `MpiVm`: MPI ranks (needs the `mpi` feature and a start under `mpirun`).
    Mpi,
}

impl Machine {
    /// The machine's name on the command line.
    ///
    /// ```
    /// assert_eq!(cos::Machine::Thread.name(), "thread");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Machine::Thread => "thread",
            Machine::Process => "process",
            Machine::Mpi => "mpi",
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Machine {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "thread" => Ok(Machine::Thread),
            "process" => Ok(Machine::Process),
            "mpi" => Ok(Machine::Mpi),
            other => Err(machine(
                MachineErrorKind::Config,
                format!("unknown machine {other:?} (thread, process or mpi)"),
            )),
        }
    }
}

/// The one call at the top of `main`: makes a worker of a started copy of this program, and
/// sets up the machine in the spawner.
///
/// - In a worker process of a [`ProcessVm`] it serves the spawner with the functions of
///   `registry` and ends the process when the spawner hangs up: it never returns there, so the
///   rest of `main` runs in the spawner only. (An MPI rank other than 0 does the same inside
///   `MpiVm::init`.)
/// - Otherwise it chooses the machine from `--vm <thread|process|mpi>` or `--vm=<name>` on the
///   command line, else from the `COS_VM` environment variable, else [`Machine::Thread`];
///   creates it and sets it with [`crate::set_vm`].
/// - The thread and process machines are sized by `--slots N` / `--slots=N` (worker slots per
///   host, else `COS_SLOTS`, else [`StartOptions::slots_per_host`], else one per available
///   core) and `--hosts N` / `--hosts=N` (simulated hosts, else `COS_HOSTS`, else
///   [`StartOptions::hosts`], else 1): the command line wins over the environment, and both
///   over the code, so a run is resized without a rebuild. The MPI machine ignores them with a
///   logged note (its ranks are the launcher's).
///
/// These arguments are read before any `--` and stay in `std::env::args`, so a program that
/// parses its own arguments should accept them.
///
/// Worker processes are this executable started with the same arguments, so call `start`
/// before anything that must happen once (reading input, printing a header, ...). The spawner
/// and the workers must register the same functions: build the registry the same way in both.
///
/// Under an MPI launcher (`mpirun` with several ranks: `OMPI_COMM_WORLD_SIZE`, `PMIX_RANK`,
/// `PMI_RANK`, `PMI_SIZE`) every rank runs the program, so `start` picks the MPI machine when
/// none is named and the build has the `mpi` feature.
///
/// # Errors
/// [`Error::Vm`] for an unknown machine name, for `mpi` in a build without the `mpi` feature,
/// under an MPI launcher without the `mpi` feature ([`MachineErrorKind::Unsupported`], saying
/// to build with `--features mpi`) or with another machine named ([`MachineErrorKind::Config`]),
/// for a size that is not a whole number above 0 (`--slots 0`, `COS_HOSTS=many`, a flag
/// without its value; [`MachineErrorKind::Config`], naming the flag or variable and the value,
/// checked on every machine), or when the machine cannot be created (for example when the
/// worker processes do not start).
///
/// ```no_run
/// static DOUBLE: cos::RemoteFn<u64, u64> = cos::RemoteFn::new("double", |x| 2 * x);
///
/// fn main() -> Result<(), cos::Error> {
///     let machine = cos::start(cos::Registry::new().with(&DOUBLE))?;
///     println!("running on the {machine} machine");
///     let r = cos::dispatch((0..100).map(|i| cos::job(&DOUBLE, i)))?;
///     assert_eq!(r[99], Ok(198));
///     cos::finalize();
///     Ok(())
/// }
/// ```
pub fn start(registry: Registry) -> Result<Machine, Error> {
    start_with(registry, StartOptions::new())
}

/// What [`start_with`] sets the machine up with, beyond its name.
///
/// ```
/// let options = cos::StartOptions::new().environment(cos::EnvironmentSpec::new().persistent(true));
/// assert!(options.environment.persistent);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartOptions {
    /// The environment of every remote task (PyOPUS's `startupDir`, `mirrorMap` and
    /// `persistentStorage` constructor options), given to the machine's builder.
    pub environment: EnvironmentSpec,
    /// Worker slots per host of the thread and process machines, when `--slots` and
    /// `COS_SLOTS` do not say (`None`: one per available core).
    pub slots_per_host: Option<usize>,
    /// Simulated hosts of the thread and process machines, when `--hosts` and `COS_HOSTS` do
    /// not say (`None`: 1).
    pub hosts: Option<usize>,
}

impl StartOptions {
    /// The defaults: no task environment.
    ///
    /// ```
    /// assert_eq!(cos::StartOptions::new(), cos::StartOptions::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the environment of every remote task.
    ///
    /// ```
    /// let o = cos::StartOptions::new().environment(cos::EnvironmentSpec::new().local_storage(true));
    /// assert!(o.environment.local_storage);
    /// ```
    pub fn environment(mut self, spec: EnvironmentSpec) -> Self {
        self.environment = spec;
        self
    }

    /// Sets the worker slots per host of the thread and process machines: the program's
    /// default, which `--slots N` and `COS_SLOTS` override. [`start_with`] refuses 0.
    ///
    /// ```
    /// let o = cos::StartOptions::new().slots_per_host(4);
    /// assert_eq!(o.slots_per_host, Some(4));
    /// ```
    pub fn slots_per_host(mut self, n: usize) -> Self {
        self.slots_per_host = Some(n);
        self
    }

    /// Sets the simulated hosts of the thread and process machines: the program's default,
    /// which `--hosts N` and `COS_HOSTS` override. [`start_with`] refuses 0.
    ///
    /// ```
    /// let o = cos::StartOptions::new().hosts(2);
    /// assert_eq!(o.hosts, Some(2));
    /// ```
    pub fn hosts(mut self, n: usize) -> Self {
        self.hosts = Some(n);
        self
    }
}

/// [`start`] with `options`: the chosen machine is built with them (in a worker process they
/// are ignored: the worker gets its machine's settings from the spawner).
///
/// # Errors
/// As [`start`]; [`Error::Storage`] when the environment does not validate (checked before
/// any machine is made, on every rank of an MPI job alike); [`Error::Vm`] with
/// [`MachineErrorKind::Config`] when [`StartOptions::slots_per_host`] or
/// [`StartOptions::hosts`] is 0 and no flag or variable overrides it.
///
/// ```no_run
/// static LS: cos::RemoteFn<(), Vec<String>> = cos::RemoteFn::new("ls", |()| {
///     let dir = cos::task_storage().expect("the task has storage");
///     std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
/// });
///
/// fn main() -> Result<(), cos::Error> {
///     let spec = cos::EnvironmentSpec::new().local_storage(true);
///     cos::start_with(cos::Registry::new().with(&LS), cos::StartOptions::new().environment(spec))?;
///     let files = cos::dispatch_single(cos::job(&LS, ()))?;
///     assert!(files.is_empty());
///     cos::finalize();
///     Ok(())
/// }
/// ```
pub fn start_with(registry: Registry, options: StartOptions) -> Result<Machine, Error> {
    if is_worker_process() {
        worker_main(&registry);
    }
    let machine = choose(std::env::args_os().skip(1), std::env::var_os(VM_ENV))?;
    let machine = under_mpirun(machine, mpi_launch(|v| std::env::var(v).ok()))?;
    let size = sizing(
        std::env::args_os().skip(1),
        |v| std::env::var_os(v),
        Size { slots_per_host: options.slots_per_host, hosts: options.hosts },
    )?;
    let environment = validated(options.environment)?;
    log::debug!(target: "cos", "starting the {machine} machine");
    match machine {
        Machine::Thread => {
            let mut builder = ThreadVm::builder(registry).environment(environment)?;
            if let Some(n) = size.slots_per_host {
                builder = builder.slots_per_host(n);
            }
            if let Some(n) = size.hosts {
                builder = builder.hosts(n);
            }
            crate::os::set_vm(builder.build())?;
        }
        Machine::Process => {
            let mut builder = ProcessVm::builder(registry).environment(environment)?;
            if let Some(n) = size.slots_per_host {
                builder = builder.slots_per_host(n);
            }
            if let Some(n) = size.hosts {
                builder = builder.hosts(n);
            }
            crate::os::set_vm(builder.build()?)?;
        }
        #[cfg(feature = "mpi")]
        Machine::Mpi => {
            if size != Size::default() {
                log::info!(
                    target: "cos",
                    "the MPI machine ignores --slots/--hosts (COS_SLOTS/COS_HOSTS, StartOptions): \
                     its ranks are the launcher's (mpirun -n)"
                );
            }
            crate::os::set_vm(crate::machines::MpiVm::init_with(registry, environment)?)?;
        }
        #[cfg(not(feature = "mpi"))]
        Machine::Mpi => {
            return Err(crate::vm::machine(
                MachineErrorKind::Unsupported,
                "built without the mpi feature (build with `--features mpi`)",
            ))
        }
    }
    Ok(machine)
}

/// The variables an MPI launcher sets in every rank: OpenMPI's, PMIx's, MPICH's (Hydra).
const MPI_RANK_VARS: [&str; 3] = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"];
const MPI_SIZE_VARS: [&str; 2] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"];

/// How an MPI launcher started this process, when it did with more than one rank (or as a
/// rank other than 0): for example `OMPI_COMM_WORLD_SIZE=3`.
fn mpi_launch(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let number = |names: &[&'static str]| {
        names.iter().find_map(|n| var(n).and_then(|v| v.trim().parse::<u64>().ok()).map(|v| (*n, v)))
    };
    match (number(&MPI_SIZE_VARS), number(&MPI_RANK_VARS)) {
        (Some((name, size)), _) if size > 1 => Some(format!("{name}={size}")),
        (_, Some((name, rank))) if rank > 0 => Some(format!("{name}={rank}")),
        _ => None,
    }
}

/// Under an MPI launcher with several ranks every rank runs the program: only the MPI machine
/// makes one spawner of them, so it is chosen (when the build has it) unless another machine
/// was named; otherwise that is an error that says how to get it.
fn under_mpirun(chosen: Option<Machine>, launch: Option<String>) -> Result<Machine, Error> {
    let Some(launch) = launch else { return Ok(chosen.unwrap_or_default()) };
    match chosen {
        Some(Machine::Mpi) => Ok(Machine::Mpi),
        #[cfg(feature = "mpi")]
        None => Ok(Machine::Mpi),
        #[cfg(not(feature = "mpi"))]
        None => Err(machine(
            MachineErrorKind::Unsupported,
            format!(
                "started by an MPI launcher ({launch}), so every rank would run the whole program; \
                 build with `--features mpi` to use the MPI machine (or start it without mpirun)"
            ),
        )),
        Some(other) => Err(machine(
            MachineErrorKind::Config,
            format!(
                "started by an MPI launcher ({launch}) with the {other} machine, so every rank would \
                 run the whole program; use `--vm mpi` (a build with `--features mpi`) or start it without mpirun"
            ),
        )),
    }
}

/// The machine named by the command line (`--vm name` or `--vm=name`, before any `--`), else
/// by the environment, else the default.
fn choose(args: impl IntoIterator<Item = OsString>, env: Option<OsString>) -> Result<Option<Machine>, Error> {
    let text = |s: OsString| {
        s.into_string()
            .map_err(|s| machine(MachineErrorKind::Config, format!("machine name {s:?} is not text")))
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--vm" {
            let name =
                args.next().ok_or_else(|| machine(MachineErrorKind::Config, "--vm needs a machine name"))?;
            return text(name)?.parse().map(Some);
        }
        if let Some(name) = arg.to_str().and_then(|a| a.strip_prefix("--vm=")) {
            return name.parse().map(Some);
        }
    }
    match env.map(text).transpose()? {
        Some(name) if !name.is_empty() => name.parse().map(Some),
        _ => Ok(None),
    }
}

/// The size of a thread or process machine; `None` leaves the builder's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Size {
    slots_per_host: Option<usize>,
    hosts: Option<usize>,
}

/// The size from the command line (`--slots N`, `--slots=N`, `--hosts N`, `--hosts=N`, the
/// first of each before any `--`), else from the environment (`COS_SLOTS`, `COS_HOSTS`; empty
/// is unset), else from the code (`code`). Every value given must be a whole number above 0.
fn sizing(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
    code: Size,
) -> Result<Size, Error> {
    let mut slots_flag = None;
    let mut hosts_flag = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        for (flag, found) in [("--slots", &mut slots_flag), ("--hosts", &mut hosts_flag)] {
            if found.is_some() {
                continue;
            }
            if arg == flag {
                let value = args.next().ok_or_else(|| {
                    machine(MachineErrorKind::Config, format!("{flag} needs a number (for example {flag} 4)"))
                })?;
                *found = Some(count(flag, &value)?);
                break;
            }
            if let Some(value) =
                arg.to_str().and_then(|a| a.strip_prefix(flag)).and_then(|a| a.strip_prefix('='))
            {
                *found = Some(count(flag, value.as_ref())?);
                break;
            }
        }
    }
    let from_env = |name: &str| match env(name) {
        Some(value) if !value.is_empty() => count(name, &value).map(Some),
        _ => Ok(None),
    };
    let positive = |what: &str, n: Option<usize>| match n {
        Some(0) => Err(machine(
            MachineErrorKind::Config,
            format!("StartOptions::{what}(0): the machine needs at least 1"),
        )),
        n => Ok(n),
    };
    Ok(Size {
        slots_per_host: match slots_flag {
            Some(n) => Some(n),
            None => match from_env(SLOTS_ENV)? {
                Some(n) => Some(n),
                None => positive("slots_per_host", code.slots_per_host)?,
            },
        },
        hosts: match hosts_flag {
            Some(n) => Some(n),
            None => match from_env(HOSTS_ENV)? {
                Some(n) => Some(n),
                None => positive("hosts", code.hosts)?,
            },
        },
    })
}

/// A size given as `source` (a flag or an environment variable): a whole number above 0.
fn count(source: &str, value: &std::ffi::OsStr) -> Result<usize, Error> {
    match value.to_str().map(|v| v.trim().parse::<usize>()) {
        Some(Ok(n)) if n > 0 => Ok(n),
        _ => Err(machine(
            MachineErrorKind::Config,
            format!("{source} {value:?} is not a whole number above 0"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_default_is_threads() {
        assert_eq!(choose(args(&["input.txt"]), None), Ok(None));
        assert_eq!(choose(args(&[]), Some("".into())), Ok(None));
        assert_eq!(under_mpirun(None, None), Ok(Machine::Thread));
    }

    #[test]
    fn the_command_line_names_the_machine() {
        assert_eq!(choose(args(&["-x", "--vm", "process"]), None), Ok(Some(Machine::Process)));
        assert_eq!(choose(args(&["--vm=mpi", "file"]), None), Ok(Some(Machine::Mpi)));
    }

    #[test]
    fn the_command_line_wins_over_the_environment() {
        assert_eq!(choose(args(&["--vm", "thread"]), Some("process".into())), Ok(Some(Machine::Thread)));
        assert_eq!(choose(args(&[]), Some("process".into())), Ok(Some(Machine::Process)));
    }

    #[test]
    fn arguments_after_a_double_dash_are_the_program_s() {
        assert_eq!(choose(args(&["--", "--vm", "process"]), None), Ok(None));
    }

    #[test]
    fn an_mpi_launch_is_seen() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(mpi_launch(env(&[])), None);
        assert_eq!(mpi_launch(env(&[("OMPI_COMM_WORLD_SIZE", "1"), ("OMPI_COMM_WORLD_RANK", "0")])), None);
        assert_eq!(
            mpi_launch(env(&[("OMPI_COMM_WORLD_SIZE", "3")])).as_deref(),
            Some("OMPI_COMM_WORLD_SIZE=3")
        );
        assert_eq!(mpi_launch(env(&[("PMIX_RANK", "2")])).as_deref(), Some("PMIX_RANK=2"));
        assert_eq!(mpi_launch(env(&[("PMI_SIZE", "4"), ("PMI_RANK", "0")])).as_deref(), Some("PMI_SIZE=4"));
    }

    #[test]
    fn under_mpirun_only_the_mpi_machine_is_right() {
        let launch = || Some("OMPI_COMM_WORLD_SIZE=3".to_string());
        assert_eq!(under_mpirun(Some(Machine::Mpi), launch()), Ok(Machine::Mpi));
        let thread = under_mpirun(Some(Machine::Thread), launch());
        assert!(matches!(thread, Err(Error::Vm(e)) if e.kind() == MachineErrorKind::Config));
        let default = under_mpirun(None, launch());
        #[cfg(feature = "mpi")]
        assert_eq!(default, Ok(Machine::Mpi));
        #[cfg(not(feature = "mpi"))]
        assert!(matches!(default, Err(Error::Vm(e)) if e.kind() == MachineErrorKind::Unsupported));
    }

    #[test]
    fn bad_names_are_errors() {
        assert!(
            matches!(choose(args(&["--vm", "gpu"]), None), Err(Error::Vm(e)) if e.kind() == MachineErrorKind::Config)
        );
        assert!(
            matches!(choose(args(&["--vm"]), None), Err(Error::Vm(e)) if e.kind() == MachineErrorKind::Config)
        );
        assert!(
            matches!(choose(args(&[]), Some("cluster".into())), Err(Error::Vm(e)) if e.kind() == MachineErrorKind::Config)
        );
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v))
    }

    fn sized(slots_per_host: Option<usize>, hosts: Option<usize>) -> Size {
        Size { slots_per_host, hosts }
    }

    fn is_config(r: Result<Size, Error>) -> bool {
        matches!(r, Err(Error::Vm(e)) if e.kind() == MachineErrorKind::Config)
    }

    #[test]
    fn without_a_size_the_builder_s_defaults_stay() {
        assert_eq!(
            sizing(args(&["input.txt", "--vm", "process"]), env(&[]), Size::default()),
            Ok(Size::default())
        );
        assert_eq!(
            sizing(args(&[]), env(&[("COS_SLOTS", ""), ("COS_HOSTS", "")]), Size::default()),
            Ok(Size::default())
        );
    }

    #[test]
    fn the_command_line_sizes_the_machine_among_the_program_s_flags() {
        let a = args(&["-x", "--slots", "3", "data.txt", "--vm", "process", "--hosts=2", "--np", "8"]);
        assert_eq!(sizing(a.clone(), env(&[]), Size::default()), Ok(sized(Some(3), Some(2))));
        assert_eq!(a[2], "3", "the arguments are read, not consumed");
        assert_eq!(sizing(args(&["--slots=5"]), env(&[]), Size::default()), Ok(sized(Some(5), None)));
        assert_eq!(sizing(args(&["--hosts", "4"]), env(&[]), Size::default()), Ok(sized(None, Some(4))));
        assert_eq!(
            sizing(args(&["--slots", "2", "--slots", "9"]), env(&[]), Size::default()),
            Ok(sized(Some(2), None))
        );
    }

    #[test]
    fn arguments_after_a_double_dash_do_not_size_the_machine() {
        assert_eq!(
            sizing(args(&["--", "--slots", "3", "--hosts=0"]), env(&[]), Size::default()),
            Ok(Size::default())
        );
    }

    #[test]
    fn the_environment_sizes_the_machine() {
        let e = env(&[("COS_SLOTS", "6"), ("COS_HOSTS", " 3 ")]);
        assert_eq!(sizing(args(&[]), e, Size::default()), Ok(sized(Some(6), Some(3))));
    }

    #[test]
    fn flags_win_over_the_environment_and_both_over_the_code() {
        let code = sized(Some(7), Some(5));
        let e = || env(&[("COS_SLOTS", "6"), ("COS_HOSTS", "3")]);
        assert_eq!(sizing(args(&["--slots", "2"]), e(), code), Ok(sized(Some(2), Some(3))));
        assert_eq!(sizing(args(&["--hosts=1"]), e(), code), Ok(sized(Some(6), Some(1))));
        assert_eq!(sizing(args(&[]), env(&[("COS_HOSTS", "3")]), code), Ok(sized(Some(7), Some(3))));
        assert_eq!(sizing(args(&[]), env(&[]), code), Ok(code));
    }

    #[test]
    fn bad_sizes_are_config_errors() {
        let none = Size::default();
        for a in [
            &["--slots", "0"][..],
            &["--slots=0"],
            &["--hosts", "many"],
            &["--hosts=-1"],
            &["--slots="],
            &["--slots"],
            &["--hosts", "2.5"],
        ] {
            assert!(is_config(sizing(args(a), env(&[]), none)), "{a:?}");
        }
        assert!(is_config(sizing(args(&[]), env(&[("COS_SLOTS", "0")]), none)));
        assert!(is_config(sizing(args(&[]), env(&[("COS_HOSTS", "two")]), none)));
        assert!(is_config(sizing(args(&[]), env(&[]), sized(Some(0), None))));
        assert!(is_config(sizing(args(&[]), env(&[]), sized(None, Some(0)))));
        // A flag overrides a bad environment or code value, as it overrides a good one.
        assert_eq!(sizing(args(&["--slots", "2"]), env(&[]), sized(Some(0), None)), Ok(sized(Some(2), None)));
        // A bad environment value is an error even when the flag is given for the other size.
        assert!(is_config(sizing(args(&["--slots", "2"]), env(&[("COS_HOSTS", "0")]), none)));
    }
}

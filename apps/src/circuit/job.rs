//! One evaluation of the op-amp as a remote task ([`EVALUATE`]): the design comes in a
//! [`Request`]; the task writes the netlist into its own storage (which the machine filled with
//! the netlist template and the model card mirrored from the shared directory), runs the
//! simulator there as a [`cos::ProcessGroup`] under the request's time limit, and answers with
//! an [`Evaluation`]: the performances and their cost, or why there are none.
//!
//! A failure is told apart by whose it is: a simulation that does not converge, prints garbage,
//! crashes or hangs past its time limit is the design's ([`Outcome::SimulationFailed`]: a
//! failed evaluation, [`f64::INFINITY`] to the optimizer); a host without the simulator, without
//! task storage or without the mirrored files is the host's ([`Outcome::HostFailed`]: no cost,
//! so the optimizer retries the evaluation on another host, see
//! [`De::retries`](crate::optimize::De::retries)).
//!
//! ```
//! use cos_apps::circuit::job::{Outcome, Program, Request, EVALUATE};
//! use cos_apps::optimize::Evaluation as _;
//! // Outside a task with storage, the host cannot evaluate: no cost, retried elsewhere.
//! let x: Vec<f64> = cos_apps::circuit::opamp::nominal().iter().map(|(_, v)| v).collect();
//! let e = EVALUATE.call(Request { x, program: Program::Ngspice, time_limit_ms: 1000, probe: None });
//! assert!(matches!(e.outcome, Outcome::HostFailed(_)));
//! assert_eq!(e.cost(), None);
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use cos::{AbstractPath, RemoteFn};

use super::cost::cost;
use super::design::{Design, Performances};
use super::ngspice::{RunError, Simulator};
use super::opamp::{self, EvalError};

/// The simulator an evaluation runs; the netlist is its last argument, after `-b`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Program {
    /// `ngspice`, found on the host's `PATH`.
    Ngspice,
    /// A program at this path (the same on every host), or a name looked up on `PATH`.
    Local(PathBuf),
    /// A program on the mirrored share, found on each host under that host's own mount point.
    Shared(AbstractPath),
}

/// What the spawner sends for one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The values of [`opamp::VARIABLES`], in their order.
    pub x: Vec<f64>,
    /// The simulator.
    pub program: Program,
    /// The simulator's time limit, in milliseconds.
    pub time_limit_ms: u64,
    /// A file on the share the task looks up on its host and compares with its mirrored copy
    /// (the netlist template): the evaluation's [`Probe`].
    pub probe: Option<AbstractPath>,
}

/// Why a host could not evaluate at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HostFailureKind {
    /// The task has no storage (the machine was started without a task environment).
    NoStorage,
    /// The simulator is missing on this host or cannot be started.
    Simulator,
    /// The mirrored netlist template or its output files are missing or unwritable.
    Files,
}

/// A host's failure to evaluate: what, and the error's text for the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFailure {
    /// What failed.
    pub kind: HostFailureKind,
    /// The error, as text (shown, never compared).
    pub reason: String,
}

/// Why a simulation gave no performances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SimFailureKind {
    /// It ran past its time limit and was killed with its process group.
    TimedOut,
    /// A signal ended it.
    Crashed,
    /// It was killed with its task (cancelled, or its worker going away).
    Killed,
    /// Its output holds no performances: no convergence, or not ngspice's output at all.
    Output,
    /// The vector is not a design (outside the bounds).
    Design,
}

impl fmt::Display for SimFailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SimFailureKind::TimedOut => "time limit",
            SimFailureKind::Crashed => "crashed",
            SimFailureKind::Killed => "killed",
            SimFailureKind::Output => "no performances",
            SimFailureKind::Design => "not a design",
        })
    }
}

/// What came of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The simulation measured the design.
    Measured {
        /// The measured and derived performances.
        performances: Performances,
        /// Their cost against [`opamp::TARGETS`].
        cost: f64,
    },
    /// The simulation failed; the design is to blame.
    SimulationFailed {
        /// How.
        kind: SimFailureKind,
        /// The error, as text (shown, never compared).
        reason: String,
        /// Processes the simulator recorded (`hang-sim.pids`) still alive after it was ended:
        /// empty unless something escaped its process group.
        leftover: Vec<u32>,
    },
    /// The host could not evaluate.
    HostFailed(HostFailure),
}

/// Where a task found the [`Request::probe`] file on its host, and whether it holds the same
/// bytes as the copy mirrored into the task's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The probe's path on the task's host.
    pub path: PathBuf,
    /// A checksum of that file ([`checksum`]); `None` when it cannot be read.
    pub share: Option<u64>,
    /// A checksum of the mirrored copy of the same name in the task's storage.
    pub copy: Option<u64>,
}

/// The answer of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The name of the host it ran on (its kernel's hostname).
    pub hostname: String,
    /// What came of it.
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
    /// The probe, when one was asked for.
    pub probe: Option<Probe>,
}

impl crate::optimize::Evaluation for Evaluation {
    /// The cost when measured; `+inf` for a failed simulation (it replaces nothing); `None`
    /// when the host failed (the optimizer retries elsewhere).
    fn cost(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Measured { cost, .. } => Some(*cost),
            Outcome::SimulationFailed { .. } => Some(f64::INFINITY),
            Outcome::HostFailed(_) => None,
        }
    }
}

/// The remote function of one evaluation: see the [module documentation](self). Register it
/// with the machine's [`Registry`](cos::Registry).
pub static EVALUATE: RemoteFn<Request, Evaluation> = RemoteFn::new("circuit_evaluate", evaluate);

/// FNV-1a (64 bits) of `bytes`: enough to tell two copies of a file apart.
///
/// ```
/// assert_ne!(cos_apps::circuit::job::checksum(b"a"), cos_apps::circuit::job::checksum(b"b"));
/// ```
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// This host's name (`/proc/sys/kernel/hostname`, the UTS namespace's), or `?`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "?".into(), |s| s.trim().to_string())
}

/// The directory the evaluation runs in: the task's storage, filled by the machine from the
/// mirror map before the function runs (its working directory when a startup directory is
/// set).
fn evaluation_dir() -> Result<PathBuf, HostFailure> {
    cos::task_working_dir().or_else(cos::task_storage).ok_or(HostFailure {
        kind: HostFailureKind::NoStorage,
        reason: "the task has no storage: start the machine with a task environment".into(),
    })
}

fn evaluate(req: Request) -> Evaluation {
    let start = Instant::now();
    let dir = evaluation_dir();
    let probe = match (&req.probe, &dir) {
        (Some(a), Ok(dir)) => Some(probe(a, dir)),
        _ => None,
    };
    let outcome = match dir {
        Ok(dir) => simulate(&req, &dir),
        Err(e) => Outcome::HostFailed(e),
    };
    Evaluation { hostname: hostname(), outcome, elapsed_ms: start.elapsed().as_millis() as u64, probe }
}

fn probe(a: &AbstractPath, dir: &Path) -> Probe {
    let sum = |p: &Path| std::fs::read(p).ok().map(|b| checksum(&b));
    let path = cos::to_actual_path(a).unwrap_or_else(|_| a.path.clone());
    let copy = a.path.file_name().and_then(|n| sum(&dir.join(n)));
    Probe { share: sum(&path), copy, path }
}

fn simulate(req: &Request, dir: &Path) -> Outcome {
    let design = match Design::from_vector(&opamp::VARIABLES, &req.x) {
        Ok(d) => d,
        Err(e) => {
            return Outcome::SimulationFailed {
                kind: SimFailureKind::Design,
                reason: e.to_string(),
                leftover: vec![],
            }
        }
    };
    let program = match &req.program {
        Program::Ngspice => PathBuf::from("ngspice"),
        Program::Local(p) => p.clone(),
        Program::Shared(a) => match cos::to_actual_path(a) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::HostFailed(HostFailure {
                    kind: HostFailureKind::Simulator,
                    reason: format!("simulator {}: {e}", a.path.display()),
                })
            }
        },
    };
    let sim = Simulator::command(program, ["-b"]).time_limit(Duration::from_millis(req.time_limit_ms));
    let failed = |kind, reason: String| Outcome::SimulationFailed { kind, reason, leftover: leftover(dir) };
    let host = |kind, reason: String| Outcome::HostFailed(HostFailure { kind, reason });
    match opamp::evaluate(dir, &design, &sim) {
        Ok(performances) => {
            let cost = cost(&performances, &opamp::TARGETS);
            Outcome::Measured { performances, cost }
        }
        Err(EvalError::Netlist(e)) => host(HostFailureKind::Files, e.to_string()),
        Err(EvalError::Run(e)) => match e {
            RunError::NotFound { .. } | RunError::Start { .. } => {
                host(HostFailureKind::Simulator, e.to_string())
            }
            RunError::Io { .. } => host(HostFailureKind::Files, e.to_string()),
            RunError::TimedOut { .. } => failed(SimFailureKind::TimedOut, e.to_string()),
            RunError::Signal { .. } => failed(SimFailureKind::Crashed, e.to_string()),
            RunError::Killed => failed(SimFailureKind::Killed, e.to_string()),
        },
        Err(EvalError::Simulation(e)) => failed(SimFailureKind::Output, e.to_string()),
    }
}

/// The processes recorded in `dir/hang-sim.pids` that are still alive (not zombies) 2 s after
/// the simulator ended: its group is ended with SIGTERM, then SIGKILL after a grace period.
fn leftover(dir: &Path) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(dir.join("hang-sim.pids")) else { return vec![] };
    let pids: Vec<u32> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    let alive = |pid: &u32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    };
    let end = Instant::now() + Duration::from_secs(2) + cos::KILL_GRACE;
    loop {
        let left: Vec<u32> = pids.iter().filter(|p| alive(p)).copied().collect();
        if left.is_empty() || Instant::now() >= end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::Evaluation as _;

    #[test]
    fn failures_of_the_host_have_no_cost_and_failed_simulations_an_infinite_one() {
        let e = |outcome| Evaluation { hostname: "h".into(), outcome, elapsed_ms: 0, probe: None };
        let host =
            e(Outcome::HostFailed(HostFailure { kind: HostFailureKind::Simulator, reason: String::new() }));
        assert_eq!(host.cost(), None);
        let sim = e(Outcome::SimulationFailed {
            kind: SimFailureKind::Output,
            reason: String::new(),
            leftover: vec![],
        });
        assert_eq!(sim.cost(), Some(f64::INFINITY));
        let ok = e(Outcome::Measured { performances: Performances::default(), cost: 1.5 });
        assert_eq!(ok.cost(), Some(1.5));
    }
}

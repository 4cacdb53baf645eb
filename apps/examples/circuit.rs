//! The circuit job: sizing the two-stage CMOS op-amp of `apps/circuits/opamp` with ngspice by
//! asynchronous differential evolution (`cos_apps::optimize`), each evaluation a remote task
//! (`cos_apps::circuit::job::EVALUATE`) that runs ngspice in its own task storage, into which
//! the machine mirrored the netlist template and the model card from the shared directory.
//!
//! The shared directory is the first entry of `PARALLEL_MIRRORED_STORAGE`, which must hold
//! `opamp/opamp.cir` and `opamp/cmos.lib` (copy `apps/circuits` there); when the variable is
//! unset, the repository's `apps/circuits` is made the share, for this program and its workers.
//!
//! ```text
//! cargo run --release -p cos-apps --example circuit -- --evals 3000             # worker threads
//! cargo run --release -p cos-apps --example circuit -- --vm process
//! cargo build --release -p cos-apps --features mpi --example circuit
//! mpirun -n 3 target/release/examples/circuit --vm mpi                        # MPI ranks
//! ```
//!
//! Flags:
//!
//! - `--evals N`: evaluation budget (default 2000); `--np N`: population (default 20);
//!   `--seed S` (default 1); `--out DIR`: where `circuit.csv` and `circuit.svg` go (default
//!   `target`); `--vm thread|process|mpi` (or `COS_VM`; default `thread`)
//! - `--time-limit-ms N`: each simulation's time limit (default 10000): past it, the simulator
//!   is killed with its process group and the evaluation fails
//! - `--simulator PATH`: the simulator instead of `ngspice` on `PATH` (called as `PATH -b
//!   NETLIST`; a path on the share reaches each host at its own mount point)
//! - `--retries N` (default 2), `--host-failure-limit K` (default 3): an evaluation its host
//!   could not make (no simulator, no storage) is retried on another host up to N times; a host
//!   with K such failures in a row is taken out of service
//! - `--inject-hang N`: the first N evaluations run `--hang-sim PATH` (default
//!   `hang-sim.sh` on the share), a simulator that never ends, to show the time limit at work
//!
//! Checks, each making the program exit with 1 when it fails:
//!
//! - `--expect-hosts N`: the machine has N hosts, and a task sent to each named host ran there
//!   (it reports its hostname);
//! - `--expect-path-translation`: on every host, the template found through that host's own
//!   share path (sent as an abstract path) and the copy mirrored into the task's storage hold
//!   the same bytes as the spawner's file;
//! - `--expect-out-of-service HOST`: HOST was taken out of service, each evaluation that failed
//!   there was retried, and none was lost;
//! - with `--inject-hang N`: exactly N evaluations were killed by the time limit, and no process
//!   of theirs was left running.
//!
//! While it runs: a progress bar on a terminal, plain lines (every tenth of the budget or 10 s)
//! otherwise, on stderr. At the end: evaluations and failures by host, the best design and its
//! performances next to the targets, on stdout.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cos::{EnvironmentSpec, HostId, MirrorEntry, Registry, Spawn, StartOptions};
use cos_apps::circuit::job::{self, Evaluation, Outcome, Program, Request, SimFailureKind, EVALUATE};
use cos_apps::circuit::{opamp, report, Design, Performances};
use cos_apps::optimize::{convergence_svg, history_csv, De, Observed, Progress};

struct Options {
    evals: usize,
    np: usize,
    seed: u64,
    out: PathBuf,
    time_limit_ms: u64,
    simulator: Option<PathBuf>,
    hang_sim: Option<PathBuf>,
    inject_hang: usize,
    retries: u32,
    host_failure_limit: u32,
    expect_hosts: Option<usize>,
    expect_path_translation: bool,
    expect_out_of_service: Option<String>,
}

const USAGE: &str = "usage: circuit [--evals N] [--np N] [--seed S] [--out DIR] [--vm thread|process|mpi] [--slots N] [--hosts N] \
[--time-limit-ms N] [--simulator PATH] [--retries N] [--host-failure-limit K] [--inject-hang N] [--hang-sim PATH] \
[--expect-hosts N] [--expect-path-translation] [--expect-out-of-service HOST]";

/// The options, or `None` when help was asked for.
fn parse_args() -> Result<Option<Options>, String> {
    let mut o = Options {
        evals: 2000,
        np: 20,
        seed: 1,
        out: PathBuf::from("target"),
        time_limit_ms: 10_000,
        simulator: None,
        hang_sim: None,
        inject_hang: 0,
        retries: 2,
        host_failure_limit: 3,
        expect_hosts: None,
        expect_path_translation: false,
        expect_out_of_service: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if ["--vm=", "--slots=", "--hosts="].iter().any(|p| arg.starts_with(p)) {
            continue; // cos::start_with reads it
        }
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{arg}: {v:?} is not a whole number"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--vm" | "--slots" | "--hosts" => drop(value()?),
            "--evals" => o.evals = number(value()?)? as usize,
            "--np" => o.np = number(value()?)? as usize,
            "--seed" => o.seed = number(value()?)?,
            "--out" => o.out = PathBuf::from(value()?),
            "--time-limit-ms" => o.time_limit_ms = number(value()?)?,
            "--simulator" => o.simulator = Some(PathBuf::from(value()?)),
            "--hang-sim" => o.hang_sim = Some(PathBuf::from(value()?)),
            "--inject-hang" => o.inject_hang = number(value()?)? as usize,
            "--retries" => o.retries = number(value()?)? as u32,
            "--host-failure-limit" => o.host_failure_limit = number(value()?)? as u32,
            "--expect-hosts" => o.expect_hosts = Some(number(value()?)? as usize),
            "--expect-path-translation" => o.expect_path_translation = true,
            "--expect-out-of-service" => o.expect_out_of_service = Some(value()?),
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    // The share: the repository's apps/circuits unless the environment names one (on a cluster
    // each node sets its own mount point). Set before the machine starts, so that worker
    // processes (which run this too) see the same.
    if std::env::var_os("PARALLEL_MIRRORED_STORAGE").is_none_or(|v| v.is_empty()) {
        std::env::set_var(
            "PARALLEL_MIRRORED_STORAGE",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("circuits"),
        );
    }
    let share = cos::mirrored_storage().remove(0);
    // Every task's storage receives the op-amp's data files (PyOPUS's mirrorMap {'opamp/*': '.'}).
    let spec = match MirrorEntry::new(share.join("opamp/*"), "") {
        Ok(entry) => EnvironmentSpec::new().mirror(entry),
        Err(e) => {
            eprintln!("circuit: {}: {e}", share.display());
            return ExitCode::FAILURE;
        }
    };
    // In a worker process this serves evaluations and never returns.
    let machine =
        match cos::start_with(Registry::new().with(&EVALUATE), StartOptions::new().environment(spec)) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("circuit: {e}");
                return ExitCode::FAILURE;
            }
        };
    let result = match parse_args() {
        Ok(Some(o)) => run(&o, machine, &share),
        Ok(None) => {
            println!("{USAGE}");
            Ok(true)
        }
        Err(msg) => {
            eprintln!("{msg}");
            cos::finalize();
            return ExitCode::from(2);
        }
    };
    cos::finalize();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            let mut line = format!("circuit: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                line += &format!(": {c}");
                cause = c.source();
            }
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}

/// What happened on one host.
#[derive(Default)]
struct HostCounts {
    measured: usize,
    /// Failed simulations, by kind.
    simulation: BTreeMap<String, usize>,
    /// Evaluations the host could not make.
    host_failed: usize,
    /// Of those, retried elsewhere.
    retried: usize,
    out_of_service: bool,
}

impl HostCounts {
    fn failures(&self) -> usize {
        self.simulation.values().sum::<usize>() + self.host_failed
    }
}

/// The simulator `path` as the tasks find it: through the share when it lies on it.
fn program(path: &Path) -> Program {
    if path.components().count() > 1 {
        if let Ok(a) = cos::to_abstract_path(path) {
            if a.index.is_some() {
                return Program::Shared(a);
            }
        }
    }
    Program::Local(path.to_path_buf())
}

fn checksum_of(path: &Path) -> Option<u64> {
    std::fs::read(path).ok().map(|b| job::checksum(&b))
}

fn run(o: &Options, machine: cos::Machine, share: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    let start = Instant::now();
    let workers = cos::slots().map_or(0, |s| s - 1);
    let hosts = cos::hosts();
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    println!(
        "Sizing the two-stage CMOS op-amp with ngspice: asynchronous DE, NP {}, {} evaluations, seed {}, \
         machine {machine} ({workers} worker slots on {} host(s): {}), share {}",
        o.np,
        o.evals,
        o.seed,
        hosts.len(),
        names.join(", "),
        share.display()
    );
    let main_program = o.simulator.as_deref().map_or(Program::Ngspice, program);
    let hang_program = program(&o.hang_sim.clone().unwrap_or_else(|| share.join("hang-sim.sh")));
    let template = share.join("opamp").join(opamp::TEMPLATE_FILE);
    let probe = cos::to_abstract_path(&template)?;
    let spawner_sum = checksum_of(&template);
    let mut ok = true;
    let mut expect = |cond: bool, what: String| {
        if !cond {
            println!("EXPECTATION FAILED: {what}");
            ok = false;
        }
    };

    // One task sent to each named host first: where it ran and where it found the share.
    let nominal: Vec<f64> = opamp::nominal().iter().map(|(_, v)| v).collect();
    let mut sent = Vec::new();
    for h in &hosts {
        let req = Request {
            x: nominal.clone(),
            program: main_program.clone(),
            time_limit_ms: o.time_limit_ms,
            probe: Some(probe.clone()),
        };
        sent.push((h.clone(), Spawn::new(&EVALUATE, req).host(h.clone()).block(true).start()?.task));
    }
    for (h, task) in sent {
        let e: Evaluation = cos::join(task)?;
        let result = match &e.outcome {
            Outcome::Measured { cost, .. } => format!("nominal design, cost {cost:.4}"),
            Outcome::SimulationFailed { kind, reason, .. } => format!("simulation failed ({kind}): {reason}"),
            Outcome::HostFailed(f) => format!("host failed ({:?}): {}", f.kind, f.reason),
        };
        println!("task sent to {h} ran on {}: {result}", e.hostname);
        if o.expect_hosts.is_some() {
            expect(e.hostname == h.to_string(), format!("the task sent to {h} ran on {}", e.hostname));
        }
        match &e.probe {
            Some(p) => {
                let same = p.share.is_some() && p.share == spawner_sum && p.copy == spawner_sum;
                println!(
                    "  {h}: abstract path {}:{} is {} there; {} the spawner's file and the task's mirrored copy",
                    probe.index.map_or("-".into(), |i| i.to_string()),
                    probe.path.display(),
                    p.path.display(),
                    if same { "same bytes as" } else { "NOT the same bytes as" }
                );
                if o.expect_path_translation {
                    expect(same, format!("the template on {h} ({}) differs or is missing", p.path.display()));
                }
            }
            None => {
                println!("  {h}: no task storage, no probe");
                if o.expect_path_translation {
                    expect(false, format!("no probe from {h}"));
                }
            }
        }
    }
    if let Some(n) = o.expect_hosts {
        expect(hosts.len() == n, format!("{} hosts, expected {n}", hosts.len()));
    }

    // The run.
    let tty = std::io::stderr().is_terminal();
    let mut counts: BTreeMap<String, HostCounts> =
        names.iter().map(|n| (n.clone(), HostCounts::default())).collect();
    let mut best: Option<(f64, Performances, Vec<f64>)> = None;
    let mut hangs_left = o.inject_hang;
    let mut timed_out = 0usize;
    let mut leftovers: Vec<(String, Vec<u32>)> = Vec::new();
    let mut last_line: Option<Instant> = None;
    let mut last_decile = 0usize;
    let mut shown = 0usize;
    let mut final_progress: Option<Progress> = None;
    let mut stderr = std::io::stderr();
    let budget = o.evals;
    let run = De::new(
        opamp::VARIABLES.iter().map(|v| v.lower).collect(),
        opamp::VARIABLES.iter().map(|v| v.upper).collect(),
    )
    .population(o.np)
    .max_evals(o.evals)
    .seed(o.seed)
    .retries(o.retries)
    .host_failure_limit(o.host_failure_limit)
    .run_observed(
        &EVALUATE,
        |x| {
            let hang = hangs_left > 0;
            hangs_left = hangs_left.saturating_sub(1);
            Request {
                x: x.to_vec(),
                program: if hang { hang_program.clone() } else { main_program.clone() },
                time_limit_ms: o.time_limit_ms,
                probe: None,
            }
        },
        |seen| match seen {
            Observed::Evaluated { x, value, host } => {
                let name = host.map_or_else(|| value.hostname.clone(), HostId::to_string);
                let c = counts.entry(name.clone()).or_default();
                match &value.outcome {
                    Outcome::Measured { performances, cost } => {
                        c.measured += 1;
                        if best.as_ref().is_none_or(|b| *cost < b.0) {
                            best = Some((*cost, performances.clone(), x.to_vec()));
                        }
                    }
                    Outcome::SimulationFailed { kind, leftover, .. } => {
                        *c.simulation.entry(kind.to_string()).or_default() += 1;
                        if *kind == SimFailureKind::TimedOut {
                            timed_out += 1;
                        }
                        if !leftover.is_empty() {
                            leftovers.push((name, leftover.clone()));
                        }
                    }
                    Outcome::HostFailed(_) => {}
                }
            }
            Observed::Failed { host, value, error, retried, out_of_service, .. } => {
                let name =
                    host.map_or_else(|| value.map_or("?".into(), |v| v.hostname.clone()), HostId::to_string);
                let c = counts.entry(name.clone()).or_default();
                c.host_failed += 1;
                c.retried += usize::from(retried);
                let why = match (value, error) {
                    (Some(Evaluation { outcome: Outcome::HostFailed(f), .. }), _) => f.reason.clone(),
                    (_, Some(e)) => e.to_string(),
                    _ => "?".into(),
                };
                // The first few of each host, for the log.
                if c.host_failed <= 5 {
                    let then = if retried { "retried" } else { "counted as failed" };
                    let _ = writeln!(
                        stderr,
                        "{}{name}: evaluation not made ({why}); {then}",
                        if tty { "\r\n" } else { "" }
                    );
                }
                if out_of_service {
                    c.out_of_service = true;
                    let _ = writeln!(
                        stderr,
                        "{}{name} taken out of service after {} failures in a row ({why})",
                        if tty { "\r\n" } else { "" },
                        o.host_failure_limit
                    );
                }
            }
            Observed::Progress(p) => {
                final_progress = Some(*p);
                let decile = p.evals * 10 / budget.max(1);
                let due = if tty {
                    last_line.is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
                } else {
                    decile > last_decile || last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
                };
                if due {
                    last_decile = decile;
                    last_line = Some(Instant::now());
                    shown = p.evals;
                    show(&mut stderr, tty, p, budget, workers, &counts);
                }
            }
        },
    );
    if let Some(p) = final_progress.as_ref().filter(|p| tty || p.evals != shown) {
        show(&mut stderr, tty, p, budget, workers, &counts);
        if tty {
            let _ = writeln!(stderr);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let run = run?;

    std::fs::create_dir_all(&o.out)?;
    let csv = o.out.join("circuit.csv");
    let svg = o.out.join("circuit.svg");
    std::fs::write(&csv, history_csv(&run.history))?;
    let title = format!("Sizing a CMOS op-amp with ngspice: asynchronous DE, NP {}, {workers} workers", o.np);
    std::fs::write(&svg, convergence_svg(&run.history, &title))?;

    let failed = final_progress.map_or(0, |p| p.failed);
    println!("evaluations: {} ({failed} failed on every attempt)", run.evals);
    println!("best cost:   {:.6}", run.best_cost);
    println!("wall time:   {wall:.1} s");
    println!("by host:     measured, failed simulations (by kind), host failures (retried elsewhere)");
    for (name, c) in &counts {
        let kinds: Vec<String> = c.simulation.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "  {name:<12} {:>6} measured, {:>4} failed simulations{}, {:>4} host failures ({} retried){}",
            c.measured,
            c.simulation.values().sum::<usize>(),
            if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) },
            c.host_failed,
            c.retried,
            if c.out_of_service { ", OUT OF SERVICE" } else { "" }
        );
    }
    println!("history:     {}", csv.display());
    println!("plot:        {}", svg.display());
    match &best {
        Some((cost, p, x)) => {
            let design = Design::from_vector(&opamp::VARIABLES, x)?;
            println!("\nbest design (cost {cost:.4}): {design}\n");
            print!("{}", report(p, &opamp::TARGETS));
        }
        None => println!("\nno design was measured"),
    }

    // The checks asked for.
    if let Some(host) = &o.expect_out_of_service {
        let c = counts.get(host);
        expect(c.is_some_and(|c| c.out_of_service), format!("{host} was not taken out of service"));
        expect(
            c.is_some_and(|c| c.host_failed > 0 && c.retried == c.host_failed),
            format!("not every failed evaluation on {host} was retried"),
        );
        expect(failed == 0, format!("{failed} evaluations failed on every attempt"));
        expect(run.evals == o.evals, format!("{} of {} evaluations made", run.evals, o.evals));
    }
    if o.inject_hang > 0 {
        expect(
            timed_out == o.inject_hang,
            format!(
                "{timed_out} evaluations killed by the time limit, {} hung simulators injected",
                o.inject_hang
            ),
        );
        for (host, pids) in &leftovers {
            expect(false, format!("processes {pids:?} of a killed simulator still run on {host}"));
        }
        if timed_out == o.inject_hang && leftovers.is_empty() {
            println!(
                "{timed_out} hung simulator{} killed by the time limit of {} ms; none left a process behind",
                if timed_out == 1 { "" } else { "s" },
                o.time_limit_ms
            );
        }
    }
    Ok(ok)
}

/// One progress report: a redrawn bar on a terminal, a plain line otherwise.
fn show(
    out: &mut std::io::Stderr,
    tty: bool,
    p: &Progress,
    budget: usize,
    workers: usize,
    counts: &BTreeMap<String, HostCounts>,
) {
    let failures: Vec<String> = counts
        .iter()
        .map(|(h, c)| format!("{h} {}{}", c.failures(), if c.out_of_service { " (out)" } else { "" }))
        .collect();
    let text = format!(
        "{}/{budget} evaluations, best cost {:.4}, {}/{workers} slots busy, failures: {}",
        p.evals,
        p.best_cost,
        p.busy,
        failures.join(", ")
    );
    if tty {
        const WIDTH: usize = 24;
        let filled = (p.evals * WIDTH / budget.max(1)).min(WIDTH);
        let _ = write!(out, "\r[{}{}] {text}\x1b[K", "#".repeat(filled), ".".repeat(WIDTH - filled));
    } else {
        let _ = writeln!(out, "progress: {text}");
    }
    let _ = out.flush();
}

//! The main job: asynchronous parallel differential evolution as PyOPUS users run it
//! (`pyopus.optimizer.de.DifferentialEvolution` over COS), on the 10-dimensional Rosenbrock
//! problem with an artificial CPU cost per evaluation standing in for a circuit simulation.
//!
//! Run with `cargo run --release --example async_de` (worker threads, the embedded default).
//! Flags:
//!
//! - `--evals N`: evaluation budget (default 20000)
//! - `--cost-us N`: busy CPU time per evaluation, in microseconds (default 1000)
//! - `--np N`: population size (default 20)
//! - `--seed S`: seed of the run (default 1)
//! - `--out DIR`: where to write `async_de.csv` and `async_de.svg` (default `target`)
//! - `--vm thread|process|mpi`: the machine (or `COS_VM`; default `thread`)
//!
//! While it runs, one progress line on stderr; at the end a summary on stdout, the convergence
//! history as CSV and its plot as SVG.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cos_apps::optimize::{convergence_svg, history_csv, De, Progress, ROSENBROCK};

const DIM: usize = 10;

struct Options {
    evals: usize,
    cost_us: u64,
    np: usize,
    seed: u64,
    out: PathBuf,
}

const USAGE: &str =
    "usage: async_de [--evals N] [--cost-us N] [--np N] [--seed S] [--out DIR] [--vm thread|process|mpi] [--slots N] [--hosts N]";

/// The options, or `None` when help was asked for.
fn parse_args() -> Result<Option<Options>, String> {
    let mut o = Options { evals: 20_000, cost_us: 1000, np: 20, seed: 1, out: PathBuf::from("target") };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if ["--vm=", "--slots=", "--hosts="].iter().any(|p| arg.starts_with(p)) {
            continue; // cos::start reads it
        }
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{arg}: {v:?} is not a whole number"));
        match arg.as_str() {
            "--vm" | "--slots" | "--hosts" => drop(value()?),
            "--evals" => o.evals = number(value()?)? as usize,
            "--cost-us" => o.cost_us = number(value()?)?,
            "--np" => o.np = number(value()?)? as usize,
            "--seed" => o.seed = number(value()?)?,
            "--out" => o.out = PathBuf::from(value()?),
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    // In a worker process this serves evaluations and never returns.
    let machine = match cos::start(cos::Registry::new().with(&ROSENBROCK)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("async_de: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match parse_args() {
        Ok(Some(o)) => run(&o, machine),
        Ok(None) => {
            println!("{USAGE}");
            Ok(())
        }
        Err(msg) => {
            eprintln!("{msg}");
            cos::finalize();
            return ExitCode::from(2);
        }
    };
    cos::finalize();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut line = format!("async_de: {e}");
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

fn run(o: &Options, machine: cos::Machine) -> Result<(), Box<dyn std::error::Error>> {
    let workers = cos::slots().map_or(0, |s| s - 1);
    let hosts = cos::hosts().len();
    let machine = match cos::slots() {
        Some(_) => {
            format!("{machine} ({workers} worker slots on {hosts} host{})", if hosts == 1 { "" } else { "s" })
        }
        None => "none (evaluations run locally, one at a time)".to_string(),
    };
    println!(
        "Asynchronous DE on Rosenbrock in {DIM} dimensions: NP {}, {} evaluations of {} us CPU each, seed {}, machine {machine}",
        o.np, o.evals, o.cost_us, o.seed
    );

    let start = Instant::now();
    let mut last_line: Option<Instant> = None;
    let show = |p: &Progress, stderr: &mut std::io::Stderr| {
        let rate = p.evals as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let line = format!(
            "{:>7} evaluations, best cost {:.4e}, {:>6.0} evals/s, {}/{} slots busy",
            p.evals, p.best_cost, rate, p.busy, workers
        );
        let _ = write!(stderr, "\r{line:<78}");
        let _ = stderr.flush();
    };
    let mut stderr = std::io::stderr();
    let mut final_progress = None;
    let cost_us = o.cost_us;
    let run =
        De::new(vec![-5.0; DIM], vec![5.0; DIM]).population(o.np).max_evals(o.evals).seed(o.seed).run_with(
            &ROSENBROCK,
            |x| (x.to_vec(), cost_us),
            |p| {
                final_progress = Some(*p);
                if last_line.is_none_or(|t| t.elapsed() >= Duration::from_millis(100)) {
                    last_line = Some(Instant::now());
                    show(p, &mut stderr);
                }
            },
        );
    if let Some(p) = final_progress {
        show(&p, &mut stderr);
        eprintln!();
    }
    let wall = start.elapsed().as_secs_f64();
    let run = run?;

    std::fs::create_dir_all(&o.out)?;
    let csv = o.out.join("async_de.csv");
    let svg = o.out.join("async_de.svg");
    std::fs::write(&csv, history_csv(&run.history))?;
    let cost = match o.cost_us {
        us if us > 0 && us % 1000 == 0 => format!("{} ms", us / 1000),
        us => format!("{us} \u{b5}s"),
    };
    let slots = if workers > 0 { format!("{workers} workers") } else { "local".to_string() };
    let title = format!("Asynchronous DE, Rosenbrock {DIM}-D: NP {}, {slots}, {cost} per evaluation", o.np);
    std::fs::write(&svg, convergence_svg(&run.history, &title))?;

    let best: Vec<String> = run.best_x.iter().map(|v| format!("{v:.6}")).collect();
    println!("evaluations: {}", run.evals);
    println!("best cost:   {:.6e}", run.best_cost);
    println!("best vector: [{}]", best.join(", "));
    println!("wall time:   {wall:.2} s");
    println!("evals/s:     {:.0}", run.evals as f64 / wall);
    println!("machine:     {machine}");
    println!("history:     {}", csv.display());
    println!("plot:        {}", svg.display());
    Ok(())
}

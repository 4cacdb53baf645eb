//! Asynchronous parallel optimization on top of the OS: PyOPUS's asynchronous differential
//! evolution (`pyopus.optimizer.de`), a test problem for it, and its convergence outputs.
//!
//! [`De`] keeps every free slot of the machine busy with cost evaluations. It never waits for a
//! generation to finish: each evaluation that comes back is compared with its target at once,
//! and a new trial is spawned in its place.
//!
//! 1. The initial population of `NP` vectors is a Latin hypercube sample of the box; it is
//!    evaluated asynchronously, as many evaluations at a time as there are free slots.
//! 2. Then, round robin over the targets `i = 0, 1, ..., NP-1, 0, ...`, while a slot is free: a
//!    trial vector is built from the current population (DE/rand/1/bin: mutant
//!    `x[a] + F (x[b] - x[c])` with `a`, `b`, `c` distinct and not `i`, binomial crossover with
//!    the target with probability `CR`, at least one component from the mutant) and its
//!    evaluation is spawned remotely with a blocking [`Spawn`](cos::Spawn).
//! 3. Whenever an evaluation finishes it is joined; its vector replaces its target when its
//!    cost is not worse, and a new trial is spawned at once.
//! 4. No new evaluation starts once the budget of evaluations has been spawned; the run ends
//!    when the last one is joined.
//!
//! An evaluation may fail where it ran: its function panicked, its worker was lost, or its
//! value has no cost ([`Evaluation`]). With [`De::retries`] it is started again on another
//! host, and a host whose evaluations fail [`De::host_failure_limit`] times in a row is taken
//! out of service (no new evaluation goes there); an evaluation that fails on every attempt
//! counts as a failed evaluation (it replaces nothing) and the run goes on. Without retries an
//! error of the OS ends the run, as it did.
//!
//! Without a machine (or with one of fewer than 2 slots) the same code runs every evaluation
//! as a local task, one at a time. The random numbers come from a generator seeded by
//! [`De::seed`], so on a deterministic machine ([`SimVm`](cos::SimVm)) a run is
//! reproducible.
//!
//! The test problem is [`ROSENBROCK`]: the Rosenbrock function plus a configurable busy wait,
//! standing in for a circuit simulation. With the defaults (`NP` 20, `F` 0.8, `CR` 0.9) on the
//! 10-dimensional box `[-5, 5]^10` and a `SimVm` with 4 worker slots, ten seeds reached best
//! costs between `3e-13` and `2e-7` within 30000 evaluations (and between `6e-7` and `5e-2`
//! within 20000); `tests/async_de.rs` asks for a best cost below `1e-4` within 30000.
//! PyOPUS's defaults, `NP` 100, `F` 0.5, `CR` 0.3, suit this problem worse (best costs about 6
//! after 30000 evaluations), and with `F` 0.5 and `NP` 20 the population stalls between 1 and
//! 50.
//!
//! ```
//! use cos_apps::optimize::{De, ROSENBROCK};
//! // No machine is set: the evaluations run locally, one after another.
//! let run = De::new(vec![-2.0; 2], vec![2.0; 2]).max_evals(400).seed(3).run(&ROSENBROCK, |x| (x.to_vec(), 0)).unwrap();
//! assert_eq!(run.evals, 400);
//! assert!(run.best_cost < 1e-2);
//! ```

mod de;
mod error;
mod evaluation;
mod plot;

pub use de::{rosenbrock, De, Progress, Solution, ROSENBROCK};
pub use error::{Error, InvalidArgument};
pub use evaluation::{Evaluation, Observed};
pub use plot::{convergence_svg, history_csv};

//! What an evaluation returns, as the optimizer reads it, and what it tells an observer of the
//! run ([`De::run_observed`](super::De::run_observed)).

use cos::HostId;

use super::de::Progress;

/// The value of one evaluation, as the optimizer reads it: its cost, or `None` when the
/// evaluation could not be made where it ran (the host lacks the simulator, say). Such an
/// evaluation is retried on another host (see [`De::retries`](super::De::retries)) and counts
/// against its host (see [`De::host_failure_limit`](super::De::host_failure_limit)).
///
/// ```
/// use cos_apps::optimize::Evaluation;
/// assert_eq!(2.5f64.cost(), Some(2.5));
/// assert_eq!(Err::<f64, String>("no simulator".into()).cost(), None);
/// ```
pub trait Evaluation {
    /// The cost (lower is better), or `None` when the evaluation failed where it ran.
    fn cost(&self) -> Option<f64>;
}

impl Evaluation for f64 {
    fn cost(&self) -> Option<f64> {
        Some(*self)
    }
}

impl<E> Evaluation for Result<f64, E> {
    fn cost(&self) -> Option<f64> {
        self.as_ref().ok().copied()
    }
}

/// What [`De::run_observed`](super::De::run_observed) tells its observer as the run goes.
#[derive(Debug)]
pub enum Observed<'a, R> {
    /// An evaluation came back from `host` with `value`, whose cost is known.
    Evaluated {
        /// The vector evaluated.
        x: &'a [f64],
        /// What the evaluation returned.
        value: &'a R,
        /// Where it ran (`None`: locally).
        host: Option<&'a HostId>,
    },
    /// An evaluation failed on `host`: the OS's error (its function panicked, its worker was
    /// lost, it ran out of time), or its value had no cost (`value`).
    Failed {
        /// The vector evaluated.
        x: &'a [f64],
        /// Where it failed (`None`: locally, or not known).
        host: Option<&'a HostId>,
        /// The OS's error, when the evaluation returned nothing.
        error: Option<&'a cos::Error>,
        /// What the evaluation returned, when it returned.
        value: Option<&'a R>,
        /// Whether it is started again (on another host when there is one in service);
        /// otherwise it counts as a failed evaluation.
        retried: bool,
        /// Whether this failure took `host` out of service.
        out_of_service: bool,
    },
    /// The run's state after a joined evaluation, once the free slots are busy again.
    Progress(&'a Progress),
}

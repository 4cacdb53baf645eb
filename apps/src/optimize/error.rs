//! The optimizer's errors: a setting outside its domain, or a failure of the OS under it.

use std::fmt;

/// Why a run of [`De`](super::De) failed.
///
/// ```
/// use cos_apps::optimize::{De, Error, InvalidArgument, ROSENBROCK};
/// let bad = De::new(vec![1.0], vec![0.0]).run(&ROSENBROCK, |x| (x.to_vec(), 0));
/// assert_eq!(bad.unwrap_err(), Error::InvalidArgument(InvalidArgument::InvertedBound(0)));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The box or a setting is outside its domain; nothing was evaluated.
    InvalidArgument(InvalidArgument),
    /// The OS failed a spawn or a join, or an evaluation failed (its function panicked, its
    /// worker was lost, ...); the run stopped once the evaluations still running were joined.
    /// The OS's error is also this error's [`source`](std::error::Error::source).
    Os(cos::Error),
    /// The OS joined none of the evaluations still pending, with no error.
    Vanished {
        /// Evaluations that were spawned and never joined.
        pending: usize,
    },
}

/// Which part of the problem or of the settings is outside its domain, with the value.
///
/// ```
/// use cos_apps::optimize::InvalidArgument;
/// assert_eq!(InvalidArgument::Population(3).to_string(), "population of 3; it needs at least 4 members");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InvalidArgument {
    /// The bounds have different lengths, or none.
    Bounds {
        /// Components of the lower bound.
        lower: usize,
        /// Components of the upper bound.
        upper: usize,
    },
    /// This component of a bound is infinite or NaN.
    NotFinite(usize),
    /// This component's lower bound is above its upper bound.
    InvertedBound(usize),
    /// A population (`NP`) below 4.
    Population(usize),
    /// A differential weight (`F`) outside `[0, 2]`.
    Weight(f64),
    /// A crossover probability (`CR`) outside `[0, 1]`.
    Crossover(f64),
    /// A budget of evaluations below the population size.
    Budget {
        /// The budget.
        max_evals: usize,
        /// The population size.
        population: usize,
    },
}

impl fmt::Display for InvalidArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidArgument::Bounds { lower, upper } => {
                write!(f, "bounds of {lower} and {upper} components; they need the same, nonzero, length")
            }
            InvalidArgument::NotFinite(i) => write!(f, "bound {i} is not finite"),
            InvalidArgument::InvertedBound(i) => write!(f, "lower bound {i} is above the upper bound"),
            InvalidArgument::Population(np) => write!(f, "population of {np}; it needs at least 4 members"),
            InvalidArgument::Weight(w) => write!(f, "differential weight {w} is outside [0, 2]"),
            InvalidArgument::Crossover(cr) => write!(f, "crossover probability {cr} is outside [0, 1]"),
            InvalidArgument::Budget { max_evals, population } => {
                write!(f, "budget of {max_evals} evaluations is below the population size {population}")
            }
        }
    }
}

impl std::error::Error for InvalidArgument {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(e) => write!(f, "invalid argument: {e}"),
            // The cause is the source, not repeated here.
            Error::Os(_) => f.write_str("an evaluation or a call to the OS failed"),
            Error::Vanished { pending } => {
                write!(f, "{pending} evaluations vanished before they were joined")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os(e) => Some(e),
            Error::InvalidArgument(_) | Error::Vanished { .. } => None,
        }
    }
}

impl From<cos::Error> for Error {
    fn from(e: cos::Error) -> Self {
        Error::Os(e)
    }
}

impl From<InvalidArgument> for Error {
    fn from(e: InvalidArgument) -> Self {
        Error::InvalidArgument(e)
    }
}

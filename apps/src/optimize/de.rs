//! Asynchronous differential evolution (PyOPUS's `DifferentialEvolution`) and its test problem.

use std::collections::HashMap;
use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use cos::{HostId, RemoteFn, Spawn, TaskGroup, Tid};

use super::error::{Error, InvalidArgument};
use super::evaluation::{Evaluation, Observed};

/// The Rosenbrock function `sum 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2`; its minimum is 0 at
/// `(1, ..., 1)`.
///
/// ```
/// assert_eq!(cos_apps::optimize::rosenbrock(&[1.0; 10]), 0.0);
/// assert_eq!(cos_apps::optimize::rosenbrock(&[0.0, 0.0]), 1.0);
/// ```
pub fn rosenbrock(x: &[f64]) -> f64 {
    x.windows(2).map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2)).sum()
}

/// Keeps the CPU busy for `micros` microseconds of wall time.
fn busy_wait(micros: u64) {
    if micros == 0 {
        return;
    }
    let until = Duration::from_micros(micros);
    let start = Instant::now();
    let mut acc = 0x9E37_79B9_7F4A_7C15u64;
    while start.elapsed() < until {
        for _ in 0..64 {
            acc = black_box(acc.rotate_left(5) ^ acc.wrapping_mul(0xBF58_476D_1CE4_E5B9));
        }
    }
    black_box(acc);
}

/// The test cost: the [`rosenbrock`] function of the vector, after a busy wait of the given
/// number of microseconds of CPU time that stands in for an expensive evaluation (a circuit
/// simulation in PyOPUS's typical use). Register it with the machine's [`Registry`](cos::Registry).
///
/// ```
/// use cos_apps::optimize::ROSENBROCK;
/// assert_eq!(ROSENBROCK.call((vec![1.0; 10], 0)), 0.0);
/// let reg = cos::Registry::new().with(&ROSENBROCK);
/// assert_eq!(reg.names(), vec!["rosenbrock"]);
/// ```
pub static ROSENBROCK: RemoteFn<(Vec<f64>, u64), f64> = RemoteFn::new("rosenbrock", |(x, micros)| {
    busy_wait(micros);
    rosenbrock(&x)
});

/// The seeded random numbers of a run (splitmix64).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The state of a run, as the progress observer of [`De::run_with`] sees it after each joined
/// evaluation, once the evaluations that replace it have been spawned.
///
/// ```
/// use cos_apps::optimize::{De, ROSENBROCK};
/// let mut seen = 0;
/// De::new(vec![-2.0; 2], vec![2.0; 2])
///     .population(5)
///     .max_evals(30)
///     .run_with(&ROSENBROCK, |x| (x.to_vec(), 0), |p| seen = p.evals)
///     .unwrap();
/// assert_eq!(seen, 30);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Evaluations joined so far.
    pub evals: usize,
    /// The best cost so far.
    pub best_cost: f64,
    /// Worker slots running an evaluation right now (without a machine: evaluations under
    /// way).
    pub busy: usize,
    /// Evaluations that failed on every attempt (see [`De::retries`]); they count in `evals`.
    pub failed: usize,
    /// Hosts taken out of service (see [`De::host_failure_limit`]).
    pub out_of_service: usize,
}

/// The outcome of a run of [`De`].
///
/// ```
/// use cos_apps::optimize::{De, ROSENBROCK};
/// let s = De::new(vec![-2.0; 2], vec![2.0; 2]).population(5).max_evals(40).run(&ROSENBROCK, |x| (x.to_vec(), 0)).unwrap();
/// assert_eq!((s.evals, s.history.len()), (40, 40));
/// assert_eq!(s.best_cost, *s.history.last().unwrap());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// The best vector found.
    pub best_x: Vec<f64>,
    /// Its cost.
    pub best_cost: f64,
    /// Evaluations made (the initial population's included).
    pub evals: usize,
    /// The convergence history: `history[k]` is the best cost after evaluation `k + 1`, in the
    /// order the evaluations were joined.
    pub history: Vec<f64>,
    /// The final population.
    pub population: Vec<Vec<f64>>,
    /// The costs of the final population.
    pub costs: Vec<f64>,
}

/// Asynchronous differential evolution over a box (PyOPUS's `DifferentialEvolution`): see the
/// [module documentation](crate::optimize) for the algorithm.
///
/// ```
/// use cos_apps::optimize::{De, ROSENBROCK};
/// let vm = cos::SimVm::new(cos::Registry::new().with(&ROSENBROCK), 2, 2).seed(1);
/// cos::set_vm(vm).unwrap();
/// let run = De::new(vec![-2.0; 3], vec![2.0; 3])
///     .population(12)
///     .max_evals(3000)
///     .run(&ROSENBROCK, |x| (x.to_vec(), 0))
///     .unwrap();
/// assert!(run.best_cost < 1e-2);
/// assert_eq!(run.history.len(), 3000);
/// cos::finalize();
/// ```
#[derive(Debug, Clone)]
pub struct De {
    lower: Vec<f64>,
    upper: Vec<f64>,
    np: usize,
    weight: f64,
    crossover: f64,
    max_evals: usize,
    seed: u64,
    retries: u32,
    host_failure_limit: u32,
}

/// The vectors and costs of the population; a member not yet evaluated has cost `+inf`.
struct Population {
    x: Vec<Vec<f64>>,
    cost: Vec<f64>,
}

/// One evaluation in flight.
struct Pending {
    target: usize,
    x: Vec<f64>,
    /// Attempts made before this one.
    attempt: u32,
    /// Where it runs (for a retry waiting to start: the host it failed on).
    host: Option<HostId>,
}

/// Which hosts' evaluations failed how often in a row (see [`De::host_failure_limit`]).
#[derive(Default)]
struct HostHealth {
    failed_in_a_row: HashMap<HostId, u32>,
    next: usize,
}

impl HostHealth {
    /// Records an outcome on `host`; `true` when this failure takes it out of service.
    fn record(&mut self, host: &HostId, failed: bool, limit: u32) -> bool {
        let n = self.failed_in_a_row.entry(host.clone()).or_insert(0);
        let was_out = *n >= limit;
        *n = if failed { n.saturating_add(1) } else { 0 };
        !was_out && *n >= limit
    }

    fn in_service(&self, host: &HostId, limit: u32) -> bool {
        self.failed_in_a_row.get(host).is_none_or(|&n| n < limit)
    }

    fn out_of_service(&self, limit: u32) -> usize {
        self.failed_in_a_row.values().filter(|&&n| n >= limit).count()
    }

    /// Where the next evaluation goes: `Ok(None)` anywhere (every host in service, or none);
    /// `Ok(Some(host))` a host in service other than `avoid` with a free slot, round robin;
    /// `Err(())` no such host has a free slot now.
    fn pick(&mut self, limit: u32, avoid: Option<&HostId>) -> Result<Option<HostId>, ()> {
        let hosts = cos::hosts();
        let good: Vec<HostId> =
            hosts.iter().filter(|h| self.in_service(h, limit) && Some(*h) != avoid).cloned().collect();
        if good.is_empty() || (avoid.is_none() && good.len() == hosts.len()) {
            return Ok(None);
        }
        let free = cos::with_vm(|vm| vm.hosts_with_free_slots()).unwrap_or_default();
        let pool: Vec<&HostId> = good.iter().filter(|h| free.contains(h)).collect();
        if pool.is_empty() {
            return Err(());
        }
        self.next = self.next.wrapping_add(1);
        Ok(Some(pool[self.next % pool.len()].clone()))
    }
}

impl De {
    /// Optimization over the box `lower <= x <= upper`, with `NP` 20, `F` 0.8, `CR` 0.9, a budget
    /// of 10000 evaluations and seed 1. The box is checked by [`run`](Self::run).
    ///
    /// ```
    /// let de = cos_apps::optimize::De::new(vec![-5.0; 10], vec![5.0; 10]);
    /// ```
    pub fn new(lower: Vec<f64>, upper: Vec<f64>) -> Self {
        De {
            lower,
            upper,
            np: 20,
            weight: 0.8,
            crossover: 0.9,
            max_evals: 10_000,
            seed: 1,
            retries: 0,
            host_failure_limit: 3,
        }
    }

    /// The population size `NP` (at least 4).
    ///
    /// ```
    /// let de = cos_apps::optimize::De::new(vec![0.0], vec![1.0]).population(40);
    /// ```
    pub fn population(mut self, np: usize) -> Self {
        self.np = np;
        self
    }

    /// The differential weight `F`, in `[0, 2]`.
    ///
    /// ```
    /// let de = cos_apps::optimize::De::new(vec![0.0], vec![1.0]).weight(0.8);
    /// ```
    pub fn weight(mut self, f: f64) -> Self {
        self.weight = f;
        self
    }

    /// The crossover probability `CR`, in `[0, 1]`.
    ///
    /// ```
    /// let de = cos_apps::optimize::De::new(vec![0.0], vec![1.0]).crossover(0.3);
    /// ```
    pub fn crossover(mut self, cr: f64) -> Self {
        self.crossover = cr;
        self
    }

    /// The budget of evaluations, the initial population's included (at least `NP`).
    ///
    /// ```
    /// let de = cos_apps::optimize::De::new(vec![0.0], vec![1.0]).max_evals(500);
    /// ```
    pub fn max_evals(mut self, n: usize) -> Self {
        self.max_evals = n;
        self
    }

    /// The seed of the run's random numbers.
    ///
    /// ```
    /// let de = cos_apps::optimize::De::new(vec![0.0], vec![1.0]).seed(42);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Starts an evaluation that failed where it ran (see [`Evaluation`]) again, on another host
    /// in service when there is one, at most `n` more times (default 0: an error of the OS ends
    /// the run, and an evaluation without a cost counts as failed).
    ///
    /// ```
    /// let de = cos_apps::optimize::De::new(vec![0.0], vec![1.0]).retries(2);
    /// ```
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// With [`retries`](Self::retries), takes a host out of service after `k` of its evaluations
    /// in a row failed (default 3): no new evaluation is sent there while another host is in
    /// service.
    ///
    /// ```
    /// let de = cos_apps::optimize::De::new(vec![0.0], vec![1.0]).retries(1).host_failure_limit(2);
    /// ```
    pub fn host_failure_limit(mut self, k: u32) -> Self {
        self.host_failure_limit = k.max(1);
        self
    }

    fn check(&self) -> Result<(), InvalidArgument> {
        if self.lower.is_empty() || self.lower.len() != self.upper.len() {
            return Err(InvalidArgument::Bounds { lower: self.lower.len(), upper: self.upper.len() });
        }
        if let Some(i) =
            (0..self.lower.len()).find(|&i| !(self.lower[i].is_finite() && self.upper[i].is_finite()))
        {
            return Err(InvalidArgument::NotFinite(i));
        }
        if let Some(i) = (0..self.lower.len()).find(|&i| self.lower[i] > self.upper[i]) {
            return Err(InvalidArgument::InvertedBound(i));
        }
        if self.np < 4 {
            return Err(InvalidArgument::Population(self.np));
        }
        if !(0.0..=2.0).contains(&self.weight) {
            return Err(InvalidArgument::Weight(self.weight));
        }
        if !(0.0..=1.0).contains(&self.crossover) {
            return Err(InvalidArgument::Crossover(self.crossover));
        }
        if self.max_evals < self.np {
            return Err(InvalidArgument::Budget { max_evals: self.max_evals, population: self.np });
        }
        Ok(())
    }

    /// Runs the optimization: `cost(args(x))` is the cost of vector `x`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad box or setting; [`Error::Os`] with the error of an
    /// evaluation that failed (its function panicked, its worker was lost) or of a spawn or
    /// join, after the evaluations still running have been joined.
    ///
    /// ```
    /// use cos_apps::optimize::{De, ROSENBROCK};
    /// let run = De::new(vec![-2.0; 2], vec![2.0; 2]).max_evals(200).run(&ROSENBROCK, |x| (x.to_vec(), 0)).unwrap();
    /// assert_eq!(run.best_cost, cos_apps::optimize::rosenbrock(&run.best_x));
    /// assert!(De::new(vec![1.0], vec![0.0]).run(&ROSENBROCK, |x| (x.to_vec(), 0)).is_err());
    /// ```
    pub fn run<A>(
        &self,
        cost: &'static RemoteFn<A, f64>,
        args: impl FnMut(&[f64]) -> A,
    ) -> Result<Solution, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        self.run_with(cost, args, |_| ())
    }

    /// As [`run`](Self::run), calling `progress` after each joined evaluation (once the free
    /// slots are busy again).
    ///
    /// # Errors
    /// As [`run`](Self::run).
    ///
    /// ```
    /// use cos_apps::optimize::{De, ROSENBROCK};
    /// let mut seen = 0;
    /// De::new(vec![-2.0; 2], vec![2.0; 2])
    ///     .max_evals(100)
    ///     .run_with(&ROSENBROCK, |x| (x.to_vec(), 0), |p| seen = p.evals)
    ///     .unwrap();
    /// assert_eq!(seen, 100);
    /// ```
    pub fn run_with<A>(
        &self,
        cost: &'static RemoteFn<A, f64>,
        args: impl FnMut(&[f64]) -> A,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Solution, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        self.run_observed(cost, args, |o| {
            if let Observed::Progress(p) = o {
                progress(p)
            }
        })
    }

    /// As [`run`](Self::run) with a cost function returning any [`Evaluation`], telling
    /// `observe` of each evaluation that came back, each that failed (and whether it is
    /// retried, see [`retries`](Self::retries)) and the progress after each.
    ///
    /// # Errors
    /// As [`run`](Self::run); with retries, an evaluation that fails is retried or counted,
    /// not an error.
    ///
    /// ```
    /// use cos_apps::optimize::{De, Observed, ROSENBROCK};
    /// let mut evaluated = 0;
    /// De::new(vec![-2.0; 2], vec![2.0; 2])
    ///     .max_evals(50)
    ///     .retries(1)
    ///     .run_observed(&ROSENBROCK, |x| (x.to_vec(), 0), |o| {
    ///         if let Observed::Evaluated { .. } = o {
    ///             evaluated += 1
    ///         }
    ///     })
    ///     .unwrap();
    /// assert_eq!(evaluated, 50);
    /// ```
    pub fn run_observed<A, R>(
        &self,
        cost: &'static RemoteFn<A, R>,
        mut args: impl FnMut(&[f64]) -> A,
        mut observe: impl FnMut(Observed<'_, R>),
    ) -> Result<Solution, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Evaluation + DeserializeOwned + 'static,
    {
        self.check()?;
        let mut rng = Rng(self.seed);
        let initial = self.initial_population(&mut rng);
        let mut pop = Population { x: initial.clone(), cost: vec![f64::INFINITY; self.np] };
        let mut pending: HashMap<Tid, Pending> = HashMap::new();
        // The evaluations under way, joined as one set (the lowest finished tid first).
        let mut group = TaskGroup::new();
        let mut history: Vec<f64> = Vec::with_capacity(self.max_evals);
        let mut best = (f64::INFINITY, initial[0].clone());
        let mut spawned = 0usize;
        let mut next_target = 0usize;
        let mut failure: Option<Error> = None;
        let mut reported = 0usize;
        let mut failed = 0usize;
        let mut again: std::collections::VecDeque<Pending> = std::collections::VecDeque::new();
        let mut health = HostHealth::default();
        let limit = self.host_failure_limit;

        loop {
            // Spawn while there is budget and a free slot (or nothing runs at all). Trials wait
            // until the whole initial population is evaluated; retries go first.
            while failure.is_none()
                && (spawned < self.max_evals || !again.is_empty())
                && (pending.is_empty() || cos::free_slots().is_some_and(|n| n > 0))
            {
                let retry = !again.is_empty();
                let mut job = if let Some(job) = again.pop_front() {
                    job
                } else if spawned < self.np {
                    Pending { target: spawned, x: initial[spawned].clone(), attempt: 0, host: None }
                } else if history.len() < self.np {
                    break;
                } else {
                    let target = next_target;
                    next_target = (next_target + 1) % self.np;
                    Pending { target, x: self.trial(&pop, target, &mut rng), attempt: 0, host: None }
                };
                let mut spawn = Spawn::new(cost, args(&job.x)).block(true);
                if self.retries > 0 {
                    match health.pick(limit, job.host.as_ref().filter(|_| retry)) {
                        Ok(Some(h)) => spawn = spawn.host(h),
                        Ok(None) => {}
                        Err(()) if pending.is_empty() => {}
                        Err(()) => {
                            // No host in service has a free slot: the job waits (first in line)
                            // for an evaluation to end; a fresh one takes its budget now.
                            if !retry {
                                spawned += 1;
                            }
                            again.push_front(job);
                            break;
                        }
                    }
                }
                match spawn.start() {
                    Ok(s) => {
                        job.host = s.host.clone();
                        let tid = s.task.tid();
                        if let Err(e) = group.add(s.task) {
                            failure = Some(Error::Os(e));
                            break;
                        }
                        pending.insert(tid, job);
                        if !retry {
                            spawned += 1;
                        }
                    }
                    Err(e) => failure = Some(Error::Os(e)),
                }
            }
            // Report each joined evaluation once its slot is busy again.
            if reported < history.len() {
                reported = history.len();
                // Worker slots running an evaluation (without a machine: evaluations under way).
                let busy = match (cos::slots(), cos::free_slots()) {
                    (Some(slots), Some(free)) => slots.saturating_sub(1 + free),
                    _ => group.len(),
                };
                let p = Progress {
                    evals: reported,
                    best_cost: best.0,
                    busy,
                    failed,
                    out_of_service: health.out_of_service(limit),
                };
                observe(Observed::Progress(&p));
            }
            if group.is_empty() {
                break;
            }
            let joined = match group.join_next() {
                Ok(Some(j)) => j,
                Ok(None) => {
                    failure.get_or_insert(Error::Vanished { pending: pending.len() });
                    break;
                }
                Err(e) => {
                    failure.get_or_insert(Error::Os(e));
                    break;
                }
            };
            let job = pending.remove(&joined.tid).expect("joined one of its evaluations");
            let value = joined.value::<R>();
            let f = match &value {
                Ok(v) => v.cost(),
                Err(_) => None,
            };
            let f = match (f, &value) {
                (Some(f), Ok(v)) => {
                    if let Some(h) = &job.host {
                        health.record(h, false, limit);
                    }
                    observe(Observed::Evaluated { x: &job.x, value: v, host: job.host.as_ref() });
                    f
                }
                _ => {
                    if self.retries == 0 {
                        if let Err(e) = value {
                            failure.get_or_insert(Error::Os(e));
                            continue;
                        }
                    }
                    let out = job.host.as_ref().is_some_and(|h| health.record(h, true, limit));
                    let retried = job.attempt < self.retries && failure.is_none();
                    observe(Observed::Failed {
                        x: &job.x,
                        host: job.host.as_ref(),
                        error: value.as_ref().err(),
                        value: value.as_ref().ok(),
                        retried,
                        out_of_service: out,
                    });
                    if retried {
                        again.push_back(Pending { attempt: job.attempt + 1, ..job });
                        continue;
                    }
                    failed += 1;
                    f64::INFINITY
                }
            };
            let Pending { target, x, .. } = job;
            // Not worse than its target (NaN never is): it replaces the target.
            if f <= pop.cost[target] {
                if f < best.0 {
                    best = (f, x.clone());
                }
                pop.x[target] = x;
                pop.cost[target] = f;
            }
            history.push(best.0);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(Solution {
            best_x: best.1,
            best_cost: best.0,
            evals: history.len(),
            history,
            population: pop.x,
            costs: pop.cost,
        })
    }

    /// A Latin hypercube sample of the box: for each component, one point in each of `NP` equal
    /// slices, the slices shuffled.
    fn initial_population(&self, rng: &mut Rng) -> Vec<Vec<f64>> {
        let dim = self.lower.len();
        let mut pop = vec![vec![0.0; dim]; self.np];
        let mut slices: Vec<usize> = (0..self.np).collect();
        for j in 0..dim {
            for k in (1..self.np).rev() {
                slices.swap(k, rng.below(k + 1));
            }
            let (lo, hi) = (self.lower[j], self.upper[j]);
            for (member, &slice) in pop.iter_mut().zip(&slices) {
                let t = (slice as f64 + rng.unit()) / self.np as f64;
                member[j] = (lo + t * (hi - lo)).clamp(lo, hi);
            }
        }
        pop
    }

    /// A DE/rand/1/bin trial vector for `target`. A mutant component outside the box is put at
    /// a random point between the target's component and the violated bound.
    fn trial(&self, pop: &Population, target: usize, rng: &mut Rng) -> Vec<f64> {
        let mut pick = |taken: &[usize]| loop {
            let k = rng.below(self.np);
            if !taken.contains(&k) {
                return k;
            }
        };
        let a = pick(&[target]);
        let b = pick(&[target, a]);
        let c = pick(&[target, a, b]);
        let dim = self.lower.len();
        let forced = rng.below(dim);
        let x = &pop.x[target];
        (0..dim)
            .map(|j| {
                if j != forced && rng.unit() >= self.crossover {
                    return x[j];
                }
                let m = pop.x[a][j] + self.weight * (pop.x[b][j] - pop.x[c][j]);
                let (lo, hi) = (self.lower[j], self.upper[j]);
                if m < lo {
                    lo + rng.unit() * (x[j] - lo)
                } else if m > hi {
                    hi - rng.unit() * (hi - x[j])
                } else {
                    m
                }
            })
            .collect()
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} evaluations, best cost {:.6e}, {} busy", self.evals, self.best_cost, self.busy)
    }
}

//! Asynchronous differential evolution (`cos_apps::optimize::De`) on the 10-dimensional Rosenbrock
//! problem: reproducible on a seeded `SimVm`, converging within a fixed budget, and correct
//! without a machine.
//!
//! Budget and threshold: with the defaults (NP 20, F 0.8, CR 0.9) on `[-5, 5]^10`, a run of
//! 30000 evaluations on `SimVm::new(registry, 2, 2)` reached best costs between 3e-13 and 2e-7
//! over ten seeds; the test asks for a best cost below 1e-4, three decades of margin.

use cos::SimEvent;
use cos_apps::optimize::{rosenbrock, De, Error, InvalidArgument, Solution, ROSENBROCK};

const DIM: usize = 10;
const BUDGET: usize = 30_000;
const THRESHOLD: f64 = 1e-4;

fn problem() -> De {
    De::new(vec![-5.0; DIM], vec![5.0; DIM])
}

/// One run on a fresh thread (a fresh OS) with a seeded `SimVm` of 2 hosts with 2 slots each.
fn sim_run(budget: usize) -> (Solution, Vec<SimEvent>) {
    std::thread::spawn(move || {
        let vm = cos::SimVm::new(cos::Registry::new().with(&ROSENBROCK), 2, 2).seed(11);
        let trace = vm.trace();
        assert_eq!(cos::set_vm(vm), Ok(true));
        let run = problem().max_evals(budget).seed(5).run(&ROSENBROCK, |x| (x.to_vec(), 0)).unwrap();
        cos::finalize();
        (run, trace.events())
    })
    .join()
    .unwrap()
}

fn assert_valid(run: &Solution, budget: usize) {
    assert_eq!(run.evals, budget);
    assert_eq!(run.history.len(), budget);
    assert!(run.history.windows(2).all(|w| w[1] <= w[0]), "best cost never rises");
    assert_eq!(*run.history.last().unwrap(), run.best_cost);
    assert_eq!(rosenbrock(&run.best_x), run.best_cost);
    assert_eq!(run.population.len(), 20);
    for (x, f) in run.population.iter().zip(&run.costs) {
        assert!(x.iter().all(|v| (-5.0..=5.0).contains(v)), "population stays in the box");
        assert_eq!(rosenbrock(x), *f);
        assert!(run.best_cost <= *f);
    }
    assert!(run.population.contains(&run.best_x));
}

#[test]
fn sim_runs_are_reproducible_and_converge() {
    let (a, trace_a) = sim_run(BUDGET);
    let (b, trace_b) = sim_run(BUDGET);
    assert_eq!(a.history, b.history);
    assert_eq!(a, b);
    assert_eq!(trace_a, trace_b);

    assert_valid(&a, BUDGET);
    assert!(a.best_cost < THRESHOLD, "best cost {:e} after {BUDGET} evaluations", a.best_cost);

    // Every evaluation ran on the machine, and the machine's 4 slots were kept busy: up to 4
    // evaluations were in flight, and they finished out of their start order.
    let spawns: Vec<_> = trace_a
        .iter()
        .filter_map(|e| if let SimEvent::Spawn { task, .. } = e { Some(*task) } else { None })
        .collect();
    let dones: Vec<_> = trace_a
        .iter()
        .filter_map(|e| if let SimEvent::Done { task, .. } = e { Some(*task) } else { None })
        .collect();
    assert_eq!(spawns.len(), BUDGET);
    assert_eq!(dones.len(), BUDGET);
    assert_ne!(spawns, dones);
    let mut in_flight = 0usize;
    let mut most = 0usize;
    for e in &trace_a {
        match e {
            SimEvent::Spawn { .. } => in_flight += 1,
            SimEvent::Done { .. } => in_flight -= 1,
        }
        most = most.max(in_flight);
    }
    assert_eq!(most, 4);
}

#[test]
fn without_a_machine_evaluations_run_locally() {
    let budget = 3000;
    let run = std::thread::spawn(move || {
        assert_eq!(cos::slots(), None);
        problem().max_evals(budget).seed(5).run(&ROSENBROCK, |x| (x.to_vec(), 0)).unwrap()
    })
    .join()
    .unwrap();
    assert_valid(&run, budget);
    // The first 20 evaluations are the initial population; the trials improved on it.
    assert!(run.best_cost < run.history[19]);
}

#[test]
fn bad_settings_are_errors() {
    let reject = |de: De, why: InvalidArgument| match de.run(&ROSENBROCK, |x| (x.to_vec(), 0)) {
        Err(Error::InvalidArgument(got)) => assert_eq!(got, why),
        other => panic!("expected an invalid argument, got {other:?}"),
    };
    reject(De::new(vec![], vec![]), InvalidArgument::Bounds { lower: 0, upper: 0 });
    reject(De::new(vec![0.0; 2], vec![1.0; 3]), InvalidArgument::Bounds { lower: 2, upper: 3 });
    reject(De::new(vec![1.0], vec![0.0]), InvalidArgument::InvertedBound(0));
    reject(De::new(vec![0.0, f64::NEG_INFINITY], vec![0.0; 2]), InvalidArgument::NotFinite(1));
    reject(problem().population(3), InvalidArgument::Population(3));
    reject(problem().weight(2.5), InvalidArgument::Weight(2.5));
    reject(problem().crossover(-0.1), InvalidArgument::Crossover(-0.1));
    reject(problem().max_evals(19), InvalidArgument::Budget { max_evals: 19, population: 20 });
}

/// A cost that panics for a vector left of the origin.
static PANICS_LEFT_OF_ORIGIN: cos::RemoteFn<Vec<f64>, f64> = cos::RemoteFn::new("fails", |x| {
    assert!(x[0] > 0.0, "evaluated left of the origin");
    rosenbrock(&x)
});

#[test]
fn a_failed_evaluation_is_the_os_error_as_source() {
    let run = std::thread::spawn(|| {
        De::new(vec![-1.0; 2], vec![1.0; 2])
            .population(8)
            .max_evals(100)
            .run(&PANICS_LEFT_OF_ORIGIN, |x| x.to_vec())
    })
    .join()
    .unwrap();
    let err = run.unwrap_err();
    let Error::Os(os) = &err else { panic!("expected the OS's error, got {err:?}") };
    let source = std::error::Error::source(&err).expect("the OS's error is the source");
    assert_eq!(source.downcast_ref::<cos::Error>(), Some(os));
}

#[test]
fn the_history_files_hold_the_run() {
    let (run, _) = sim_run(2000);

    // The CSV reads back as the very history.
    let csv = cos_apps::optimize::history_csv(&run.history);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("evaluation,best_cost"));
    let rows: Vec<(usize, f64)> = lines
        .map(|l| {
            let (i, f) = l.split_once(',').unwrap();
            (i.parse().unwrap(), f.parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), run.history.len());
    for (k, (i, f)) in rows.iter().enumerate() {
        assert_eq!((*i, *f), (k + 1, run.history[k]));
    }

    // The plot's line stays inside its axes box and only goes right and down.
    let svg = cos_apps::optimize::convergence_svg(&run.history, "a <run> & more");
    assert!(svg.contains("a &lt;run&gt; &amp; more"));
    let attr = |tag: &str, name: &str| -> String {
        let start = svg.find(tag).unwrap();
        let rest = &svg[start..];
        let at = rest.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        rest[at..at + rest[at..].find('"').unwrap()].to_string()
    };
    let frame = "<rect x=";
    let num = |s: String| s.parse::<f64>().unwrap();
    let (x0, y0) = (num(attr(frame, "x")), num(attr(frame, "y")));
    let (x1, y1) = (x0 + num(attr(frame, "width")), y0 + num(attr(frame, "height")));
    let points: Vec<(f64, f64)> = attr("<polyline", "points")
        .split(' ')
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect();
    assert!(points.len() > 2);
    for p in &points {
        assert!((x0..=x1).contains(&p.0) && (y0..=y1).contains(&p.1), "{p:?} outside the axes");
    }
    assert!(points.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
    assert_eq!(points.last().unwrap().0, x1);
}

//! One evaluation of the op-amp as a remote task (`cos_apps::circuit::job::EVALUATE`) on worker
//! threads, whose task storage the machine fills with the circuit's files mirrored from the share: the nominal design is measured there; a
//! simulator that never ends is killed by the time limit with its child; a missing simulator is
//! the host's failure (no cost: the optimizer retries elsewhere), not a failed simulation.

use std::path::PathBuf;

use cos::{EnvironmentSpec, MirrorEntry, Registry, ThreadVm};
use cos_apps::circuit::job::{HostFailureKind, Outcome, Program, Request, SimFailureKind, EVALUATE};
use cos_apps::circuit::opamp;
use cos_apps::optimize::Evaluation as _;

fn circuits() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("circuits")
}

fn have_ngspice() -> bool {
    std::process::Command::new("ngspice").arg("--version").output().is_ok()
}

/// Runs `requests` as remote tasks on a thread machine whose tasks get `circuits/opamp/*`.
fn evaluate_remotely(requests: Vec<Request>) -> Vec<cos_apps::circuit::job::Evaluation> {
    let share = circuits();
    let spec =
        EnvironmentSpec::new().mirror(MirrorEntry::new_in(share.join("opamp/*"), "", &[&share]).unwrap());
    // The workers translate the mirror map with this process's share list.
    std::env::set_var("PARALLEL_MIRRORED_STORAGE", &share);
    let vm = ThreadVm::builder(Registry::new().with(&EVALUATE))
        .slots_per_host(2)
        .environment(spec)
        .unwrap()
        .build();
    cos::set_vm(vm).unwrap();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|r| cos::Spawn::new(&EVALUATE, r).block(true).start().unwrap().task)
        .collect();
    let out = tasks.into_iter().map(|t| cos::join(t).unwrap()).collect();
    cos::finalize();
    out
}

fn nominal() -> Vec<f64> {
    opamp::nominal().iter().map(|(_, v)| v).collect()
}

#[test]
fn an_evaluation_measures_in_its_storage_and_tells_whose_failure_it_was() {
    if !have_ngspice() {
        eprintln!("ngspice is not installed: skipped");
        return;
    }
    let req = |program, time_limit_ms| Request { x: nominal(), program, time_limit_ms, probe: None };
    let hang = circuits().join("hang-sim.sh");
    let out = evaluate_remotely(vec![
        req(Program::Ngspice, 20_000),
        req(Program::Local(hang), 300),
        req(Program::Local("/no/such/ngspice".into()), 1000),
    ]);

    match &out[0].outcome {
        Outcome::Measured { performances, cost } => {
            assert!(cost.is_finite() && *cost > 0.0, "the nominal design misses some targets: {cost}");
            assert!(performances.value("gain_db").is_some_and(|g| g > 60.0), "{performances:?}");
        }
        other => panic!("the nominal design was not measured: {other:?}"),
    }
    match &out[1].outcome {
        Outcome::SimulationFailed { kind, leftover, .. } => {
            assert_eq!(*kind, SimFailureKind::TimedOut);
            assert!(leftover.is_empty(), "processes {leftover:?} outlived the time limit");
        }
        other => panic!("the hung simulator was not killed by the time limit: {other:?}"),
    }
    assert_eq!(out[1].cost(), Some(f64::INFINITY), "a failed simulation is a failed evaluation");
    match &out[2].outcome {
        Outcome::HostFailed(f) => assert_eq!(f.kind, HostFailureKind::Simulator),
        other => panic!("a missing simulator is the host's failure: {other:?}"),
    }
    assert_eq!(out[2].cost(), None, "the host's failure has no cost");
}

//! The two-stage Miller-compensated CMOS operational amplifier of `circuits/opamp/`: its design
//! variables, the performances its netlist measures, the targets it is sized for and one
//! evaluation (netlist, simulator run, parsed performances) in a task's directory.
//!
//! Topology: an NMOS differential pair (M1, M2, width `w1`) with a PMOS current-mirror load
//! (M3, M4, `w3`) and a tail source (M5, `w5`) mirrored from the bias current `ibias` through
//! the diode M8 (10 µm); a PMOS common-source second stage (M6, `w6`) with an NMOS sink (M7,
//! `w7`, mirrored from M8); Miller capacitor `cc` with a 2 kΩ nulling resistor; all lengths
//! 1 µm, 3.3 V supply, 10 pF load, level-1 models of `cmos.lib`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::design::{Design, Goal, Measured, Performances, Target, Variable};
use super::measure::{parse_output, SimError};
use super::netlist::{NetlistError, Template};
use super::ngspice::{RunError, Simulator};

/// The netlist template, a data file mirrored into each task's directory.
pub const TEMPLATE_FILE: &str = "opamp.cir";
/// The model file the template includes.
pub const MODEL_FILE: &str = "cmos.lib";
/// The netlist written for each evaluation, next to the template.
pub const NETLIST_FILE: &str = "design.cir";
/// The input common-mode voltage, where the follower's output should sit.
const VCM: f64 = 1.65;
/// The load capacitance in pF, for the figure of merit.
const LOAD_PF: f64 = 10.0;

/// The design variables, in the order of an optimizer's parameter vector.
pub const VARIABLES: [Variable; 7] = [
    Variable { name: "w1", lower: 2e-6, upper: 100e-6, unit: "m" },
    Variable { name: "w3", lower: 2e-6, upper: 100e-6, unit: "m" },
    Variable { name: "w5", lower: 2e-6, upper: 100e-6, unit: "m" },
    Variable { name: "w6", lower: 5e-6, upper: 300e-6, unit: "m" },
    Variable { name: "w7", lower: 2e-6, upper: 200e-6, unit: "m" },
    Variable { name: "ibias", lower: 2e-6, upper: 50e-6, unit: "A" },
    Variable { name: "cc", lower: 0.2e-12, upper: 10e-12, unit: "F" },
];

/// What the netlist measures (printed by ngspice): supply power (W), the follower's output at
/// DC (V), DC gain (dB), unity-gain bandwidth (Hz), phase margin (°), rising slew rate (V/s).
pub const MEASURES: [&str; 6] = ["power", "vout_dc", "gain_db", "ugbw", "pm", "slew"];

/// The targets: gain, bandwidth, phase margin, slew rate, power, systematic offset, and a figure
/// of merit (unity-gain bandwidth times load over power, MHz·pF/mW) rewarded beyond its goal.
pub const TARGETS: [Target; 8] = [
    Target {
        measure: "gain_db",
        goal: Goal::AtLeast(70.0),
        norm: 10.0,
        penalty: 1.0,
        tradeoff: 0.0,
        unit: "dB",
    },
    Target { measure: "ugbw", goal: Goal::AtLeast(20e6), norm: 5e6, penalty: 1.0, tradeoff: 0.0, unit: "Hz" },
    Target { measure: "pm", goal: Goal::AtLeast(60.0), norm: 10.0, penalty: 1.0, tradeoff: 0.0, unit: "°" },
    Target {
        measure: "slew",
        goal: Goal::AtLeast(15e6),
        norm: 5e6,
        penalty: 1.0,
        tradeoff: 0.0,
        unit: "V/s",
    },
    Target {
        measure: "power",
        goal: Goal::AtMost(400e-6),
        norm: 100e-6,
        penalty: 1.0,
        tradeoff: 0.0,
        unit: "W",
    },
    Target {
        measure: "offset",
        goal: Goal::AtMost(2e-3),
        norm: 1e-3,
        penalty: 1.0,
        tradeoff: 0.0,
        unit: "V",
    },
    Target {
        measure: "offset",
        goal: Goal::AtLeast(-2e-3),
        norm: 1e-3,
        penalty: 1.0,
        tradeoff: 0.0,
        unit: "V",
    },
    Target {
        measure: "fom",
        goal: Goal::AtLeast(500.0),
        norm: 100.0,
        penalty: 1.0,
        tradeoff: 0.1,
        unit: "MHz·pF/mW",
    },
];

/// A hand-sized starting design (it meets the gain target, not the others).
///
/// ```
/// let d = cos_apps::circuit::opamp::nominal();
/// assert_eq!(d.get("ibias"), Some(20e-6));
/// ```
pub fn nominal() -> Design {
    Design::from_vector(&VARIABLES, &[20e-6, 10e-6, 20e-6, 60e-6, 40e-6, 20e-6, 3e-12])
        .expect("the nominal design lies within the bounds")
}

/// Adds the performances computed from the measured ones: `offset` (the follower's output minus
/// the input, V) and `fom` (MHz·pF/mW). Each fails when what it needs failed.
///
/// ```
/// use cos_apps::circuit::{opamp, Measured, Performances};
/// let mut p = Performances::default();
/// p.insert("vout_dc", Measured::Value(1.651));
/// p.insert("ugbw", Measured::Value(10e6));
/// p.insert("power", Measured::Value(0.5e-3));
/// opamp::derive(&mut p);
/// assert!((p.value("offset").unwrap() - 1e-3).abs() < 1e-12);
/// assert!((p.value("fom").unwrap() - 200.0).abs() < 1e-9);
/// ```
pub fn derive(p: &mut Performances) {
    let offset = match p.value("vout_dc") {
        Some(v) => Measured::Value(v - VCM),
        None => Measured::Failed("vout_dc failed".into()),
    };
    let fom = match (p.value("ugbw"), p.value("power")) {
        (Some(f), Some(w)) if w > 0.0 => Measured::Value(f / 1e6 * LOAD_PF / (w * 1e3)),
        (Some(_), Some(w)) => Measured::Failed(format!("power {w} W is not positive")),
        _ => Measured::Failed("ugbw or power failed".into()),
    };
    p.insert("offset", offset);
    p.insert("fom", fom);
}

/// Why an evaluation gave no performances.
#[derive(Debug)]
pub enum EvalError {
    /// The netlist could not be written.
    Netlist(NetlistError),
    /// The simulator did not run to its end.
    Run(RunError),
    /// Its output gives no performances.
    Simulation(SimError),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Netlist(e) => write!(f, "netlist: {e}"),
            EvalError::Run(e) => write!(f, "simulator: {e}"),
            EvalError::Simulation(e) => write!(f, "simulation: {e}"),
        }
    }
}

impl std::error::Error for EvalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EvalError::Netlist(e) => Some(e),
            EvalError::Run(e) => Some(e),
            EvalError::Simulation(e) => Some(e),
        }
    }
}

/// The data files an evaluation needs in its directory (to mirror from the shared directory).
///
/// ```
/// assert_eq!(cos_apps::circuit::opamp::FILES, ["opamp.cir", "cmos.lib"]);
/// ```
pub const FILES: [&str; 2] = [TEMPLATE_FILE, MODEL_FILE];

/// Evaluates `design` in `dir`, which holds [`FILES`]: writes [`NETLIST_FILE`], runs `sim` there
/// and returns the measured and derived performances.
///
/// # Errors
/// [`EvalError`]: the netlist, the simulator run or its output failed.
///
/// ```no_run
/// use cos_apps::circuit::{opamp, Simulator};
/// let p = opamp::evaluate(std::path::Path::new("/tmp/task1"), &opamp::nominal(), &Simulator::ngspice());
/// ```
pub fn evaluate(dir: &Path, design: &Design, sim: &Simulator) -> Result<Performances, EvalError> {
    let template = Template::load(dir.join(TEMPLATE_FILE)).map_err(EvalError::Netlist)?;
    template.write(design, dir, NETLIST_FILE).map_err(EvalError::Netlist)?;
    let out = sim.run(dir, NETLIST_FILE).map_err(EvalError::Run)?;
    let mut p = parse_output(&out.stdout, &out.stderr, &MEASURES).map_err(EvalError::Simulation)?;
    derive(&mut p);
    Ok(p)
}

/// The directory holding [`FILES`] in this source tree (for tests and local runs).
///
/// ```
/// assert!(cos_apps::circuit::opamp::source_dir().join("opamp.cir").exists());
/// ```
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("circuits/opamp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::cost::cost;
    use crate::circuit::design::report;
    use std::time::Duration;

    fn task_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cos-opamp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in FILES {
            std::fs::copy(source_dir().join(f), dir.join(f)).unwrap();
        }
        dir
    }

    fn have_ngspice() -> bool {
        std::process::Command::new("ngspice").arg("--version").output().is_ok()
    }

    #[test]
    fn the_nominal_design_simulates_and_measures_everything() {
        if !have_ngspice() {
            eprintln!("ngspice is not installed: skipped");
            return;
        }
        let dir = task_dir("nominal");
        let p =
            evaluate(&dir, &nominal(), &Simulator::ngspice().time_limit(Duration::from_secs(20))).unwrap();
        println!("{}", report(&p, &TARGETS));
        for t in TARGETS {
            assert!(p.value(t.measure).is_some(), "{} failed: {:?}", t.measure, p.get(t.measure));
        }
        let gain = p.value("gain_db").unwrap();
        assert!((60.0..100.0).contains(&gain), "gain {gain} dB");
        assert!(cost(&p, &TARGETS) > 0.0, "the nominal design does not meet every target");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_simulator_is_a_run_error() {
        let dir = task_dir("nosim");
        let r = evaluate(&dir, &nominal(), &Simulator::command("/no/such/ngspice", ["-b"]));
        assert!(matches!(r, Err(EvalError::Run(RunError::NotFound { .. }))), "{r:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_template_is_a_netlist_error() {
        let dir = std::env::temp_dir().join(format!("cos-opamp-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = evaluate(&dir, &nominal(), &Simulator::ngspice());
        assert!(matches!(r, Err(EvalError::Netlist(NetlistError::Io { .. }))), "{r:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

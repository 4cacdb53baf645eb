//! Sizing a circuit with ngspice: designs and their netlists, running the simulator in a task's
//! directory under a time limit, reading the measured performances, and the cost of a design
//! against its targets, as PyOPUS's design demos compute it.
//!
//! The circuit is a two-stage CMOS operational amplifier ([`opamp`]); its data files (netlist
//! template, model card) are in `circuits/opamp/`, to be mirrored into each task's directory.
//! [`job`] is one evaluation as a remote task, the unit of work of `examples/circuit.rs`.
//!
//! ```no_run
//! use cos_apps::circuit::{cost, opamp, report, Simulator};
//! let dir = std::path::Path::new("/tmp/task"); // holds opamp::FILES
//! let p = opamp::evaluate(dir, &opamp::nominal(), &Simulator::ngspice()).unwrap();
//! println!("cost {}\n{}", cost(&p, &opamp::TARGETS), report(&p, &opamp::TARGETS));
//! ```

mod cost;
mod design;
pub mod job;
mod measure;
mod netlist;
mod ngspice;
pub mod opamp;

pub use cost::{contribution, cost, FAILED_MEASURE};
pub use design::{report, Design, DesignError, Goal, Measured, Performances, Report, Target, Variable};
pub use measure::{parse_output, SimError};
pub use netlist::{NetlistError, Template};
pub use ngspice::{Output, RunError, Simulator, STDERR_FILE, STDOUT_FILE};

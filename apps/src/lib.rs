//! # cos-apps: applications of the cos OS
//!
//! The jobs that users of [`cos`] run on it, each an application of the OS rather than a part of
//! it: [`optimize`], PyOPUS's asynchronous parallel differential evolution with a test problem
//! and its convergence outputs, and [`circuit`], sizing a CMOS op-amp with ngspice. The programs
//! that run them are this crate's examples (`examples/async_de.rs`, the main job;
//! `examples/circuit.rs`, the circuit job).
//!
//! ```
//! use cos_apps::optimize::{De, ROSENBROCK};
//! let run = De::new(vec![-2.0; 2], vec![2.0; 2]).max_evals(200).run(&ROSENBROCK, |x| (x.to_vec(), 0)).unwrap();
//! assert_eq!(run.evals, 200);
//! ```

#![warn(missing_docs)]

pub mod circuit;
pub mod optimize;

//! Reading the measured performances from ngspice's output: `.meas` results and printed vectors
//! (`name = value` lines). A run that did not converge, or whose output is not ngspice's, is an
//! error with the reason; a single measurement that failed (no crossing found, a quantity that
//! depends on a failed one) is a [`Measured::Failed`] performance, so that the cost function can
//! weigh it.

use std::fmt;

use super::design::{Measured, Performances};

/// Why a simulation's output gives no performances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// An analysis did not converge (ngspice aborted it).
    NoConvergence {
        /// The analysis (`op`, `ac`, `tran`, ...).
        analysis: String,
        /// ngspice's account of the failure (the `doAnalyses:` line, or the line that says so).
        detail: String,
    },
    /// Not one measurement came out; ngspice's first error line says why.
    NoResults {
        /// The error line.
        detail: String,
    },
    /// The output is not what ngspice prints: a malformed number, a measurement printed twice
    /// with different values, or no sign of ngspice at all.
    Garbage {
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::NoConvergence { analysis, detail } => {
                write!(f, "{analysis} analysis did not converge: {detail}")
            }
            SimError::NoResults { detail } => write!(f, "no measurement came out: {detail}"),
            SimError::Garbage { reason } => write!(f, "unreadable simulator output: {reason}"),
        }
    }
}

impl std::error::Error for SimError {}

/// The performances named `measures` in ngspice's standard output `stdout` and standard error
/// `stderr`.
///
/// # Errors
/// [`SimError`] when an analysis did not converge, when no measurement came out, or when the
/// output is not ngspice's.
///
/// ```
/// use cos_apps::circuit::{parse_output, Measured};
/// let out = "Circuit: * amp\ngain_db             =  7.817875e+01\n";
/// let err = " meas ac ugbw when gain=0 fall=1 failed!\n";
/// let p = parse_output(out, err, &["gain_db", "ugbw"]).unwrap();
/// assert_eq!(p.value("gain_db"), Some(78.17875));
/// assert!(matches!(p.get("ugbw"), Some(Measured::Failed(_))));
/// ```
pub fn parse_output(stdout: &str, stderr: &str, measures: &[&str]) -> Result<Performances, SimError> {
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).map(str::trim).collect();
    if let Some(e) = convergence_failure(&lines) {
        return Err(e);
    }
    let mut values: Vec<Option<f64>> = vec![None; measures.len()];
    let mut not_finite: Vec<Option<String>> = vec![None; measures.len()];
    for line in &lines {
        let Some((name, rest)) = line.split_once('=') else { continue };
        let Some(i) = measures.iter().position(|m| *m == name.trim()) else { continue };
        let token = rest.split_whitespace().next().unwrap_or("");
        let value = match token.parse::<f64>() {
            Ok(v) => v,
            Err(_) if is_nan_or_inf(token) => {
                not_finite[i] = Some(format!("not a number ({token})"));
                continue;
            }
            Err(_) => return Err(SimError::Garbage { reason: format!("malformed value in {line:?}") }),
        };
        if !value.is_finite() {
            not_finite[i] = Some(format!("not a number ({token})"));
            continue;
        }
        match values[i] {
            Some(old) if old != value => {
                return Err(SimError::Garbage {
                    reason: format!("{} printed twice: {old} and {value}", measures[i]),
                })
            }
            _ => values[i] = Some(value),
        }
    }
    let is_ngspice = lines.iter().any(|l| l.starts_with("Circuit:") || l.starts_with("ngspice"));
    if values.iter().all(Option::is_none) {
        if !is_ngspice {
            return Err(SimError::Garbage { reason: "no sign of ngspice in the output".into() });
        }
        let detail = lines.iter().find(|l| l.starts_with("Error")).map_or("no error printed", |l| l);
        return Err(SimError::NoResults { detail: detail.to_string() });
    }
    let mut p = Performances::default();
    for (i, name) in measures.iter().enumerate() {
        let m = match (values[i], not_finite[i].take()) {
            (Some(v), _) => Measured::Value(v),
            (None, Some(why)) => Measured::Failed(why),
            (None, None) => Measured::Failed(failure_reason(&lines, name)),
        };
        p.insert(*name, m);
    }
    Ok(p)
}

fn is_nan_or_inf(token: &str) -> bool {
    let t = token.trim_start_matches(['-', '+']).to_ascii_lowercase();
    t == "nan" || t.starts_with("inf")
}

/// The aborted analysis, when ngspice aborted one (`op simulation(s) aborted`).
fn convergence_failure(lines: &[&str]) -> Option<SimError> {
    let aborted = lines.iter().find_map(|l| l.strip_suffix("simulation(s) aborted"))?;
    let analysis = aborted.trim().to_string();
    let detail = lines
        .iter()
        .find(|l| l.starts_with("doAnalyses:"))
        .or_else(|| lines.iter().find(|l| l.contains("Timestep too small") || l.contains("solution failed")))
        .map_or_else(|| format!("{analysis} simulation(s) aborted"), |l| l.to_string());
    Some(SimError::NoConvergence { analysis, detail })
}

/// Why the measurement `name` is missing: the first error or failure line that names it.
fn failure_reason(lines: &[&str], name: &str) -> String {
    let names_it = |l: &str| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| w == name);
    let line =
        lines.iter().find(|l| names_it(l) && (l.starts_with("Error") || l.ends_with("failed!"))).or_else(
            // Not computed: it depends on a failed measurement (`vector pm is not available`).
            || lines.iter().find(|l| names_it(l) && l.contains("not available")),
        );
    match line {
        Some(l) if l.contains("out of interval") => {
            format!("{name}: no crossing in the analysed range ({l})")
        }
        Some(l) => l.to_string(),
        None => format!("{name} is not in the simulator's output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEASURES: [&str; 6] = ["power", "vout_dc", "gain_db", "ugbw", "pm", "slew"];

    /// A captured run: standard output followed by standard error (the parser reads both).
    fn parse(sample: &str) -> Result<Performances, SimError> {
        parse_output(sample, "", &MEASURES)
    }

    #[test]
    fn a_nominal_run_gives_every_performance() {
        let p = parse(include_str!("testdata/nominal.out")).unwrap();
        assert_eq!(p.value("power"), Some(4.721488e-04));
        assert_eq!(p.value("vout_dc"), Some(1.650421));
        assert_eq!(p.value("gain_db"), Some(78.17875));
        assert_eq!(p.value("ugbw"), Some(1.117350e+07));
        assert_eq!(p.value("pm"), Some(46.8676));
        assert_eq!(p.value("slew"), Some(1.297539e+07));
    }

    #[test]
    fn failed_measurements_are_failed_performances_with_ngspice_s_reason() {
        let p = parse(include_str!("testdata/failed-measures.out")).unwrap();
        assert_eq!(p.value("power"), Some(3.329905));
        assert_eq!(p.value("gain_db"), Some(-195.8508));
        for name in ["ugbw", "pm", "slew"] {
            match p.get(name) {
                Some(Measured::Failed(why)) => assert!(why.contains(name), "{name}: {why}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_run_that_did_not_converge_is_an_error_naming_the_analysis() {
        match parse(include_str!("testdata/no-convergence.out")) {
            Err(SimError::NoConvergence { analysis, detail }) => {
                assert_eq!(analysis, "op");
                assert!(detail.starts_with("doAnalyses: OP"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(parse(include_str!("testdata/garbage.out")), Err(SimError::Garbage { .. })));
        assert!(matches!(parse(""), Err(SimError::Garbage { .. })));
        assert!(matches!(parse(include_str!("testdata/garbled-number.out")), Err(SimError::Garbage { .. })));
        let twice = "Circuit: x\npower = 1e-3\npower = 2e-3\n";
        assert!(matches!(parse(twice), Err(SimError::Garbage { .. })));
        // Arbitrary text made of the pieces the parser looks for never panics.
        const ALPHABET: &[u8] = b"power=1e-3 nan\n\t-+.eE0123456789 ugbw= simulation(s) aborted Circuit:";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let text: String = (0..300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
                })
                .collect();
            let _ = parse(&text);
        }
    }

    #[test]
    fn ngspice_errors_without_any_value_are_no_results() {
        let out = "Circuit: * amp\nError: unknown subckt: x1 in1 fb1 out1 vdd1 0 opamp\n";
        match parse(out) {
            Err(SimError::NoResults { detail }) => assert!(detail.contains("unknown subckt")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_nan_value_is_a_failed_measurement() {
        let p = parse("Circuit: x\npower = 1e-3\npm = -nan\n").unwrap();
        assert!(matches!(p.get("pm"), Some(Measured::Failed(why)) if why.contains("nan")));
    }
}

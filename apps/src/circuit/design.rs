//! Designs (values of the design variables) and performances (what a simulation measured), with
//! the targets a design is sized for and a table showing one next to the other.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A design variable: its name in the netlist template, its bounds and its unit.
///
/// ```
/// use cos_apps::circuit::Variable;
/// let w = Variable { name: "w1", lower: 2e-6, upper: 100e-6, unit: "m" };
/// assert!(w.contains(20e-6));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variable {
    /// The placeholder's name: `@name@` in the template.
    pub name: &'static str,
    /// The smallest value.
    pub lower: f64,
    /// The largest value.
    pub upper: f64,
    /// The unit, for display (`m`, `A`, `F`).
    pub unit: &'static str,
}

impl Variable {
    /// Whether `value` lies within the bounds.
    ///
    /// ```
    /// # use cos_apps::circuit::Variable;
    /// let c = Variable { name: "cc", lower: 0.2e-12, upper: 10e-12, unit: "F" };
    /// assert!(!c.contains(1e-9));
    /// ```
    pub fn contains(&self, value: f64) -> bool {
        value >= self.lower && value <= self.upper
    }
}

/// Why a parameter vector is not a design.
#[derive(Debug, Clone, PartialEq)]
pub enum DesignError {
    /// The vector has `got` entries for `expected` variables.
    Length {
        /// The number of variables.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A value is NaN, infinite or outside its variable's bounds.
    OutOfBounds {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: f64,
    },
}

impl fmt::Display for DesignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DesignError::Length { expected, got } => {
                write!(f, "{got} values for {expected} design variables")
            }
            DesignError::OutOfBounds { name, value } => write!(f, "{name} = {value} is outside its bounds"),
        }
    }
}

impl std::error::Error for DesignError {}

/// The values of a circuit's design variables.
///
/// ```
/// use cos_apps::circuit::{Design, Variable};
/// let vars = [Variable { name: "ibias", lower: 1e-6, upper: 50e-6, unit: "A" }];
/// let d = Design::from_vector(&vars, &[20e-6]).unwrap();
/// assert_eq!(d.get("ibias"), Some(20e-6));
/// assert_eq!(d.to_string(), "ibias = 20 µA");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    values: Vec<(&'static str, f64, &'static str)>,
}

impl Design {
    /// The design whose variables `variables` have the values `x` (an optimizer's parameter
    /// vector, in the same order).
    ///
    /// # Errors
    /// [`DesignError`] when the lengths differ or a value is not finite or out of its bounds.
    ///
    /// ```
    /// # use cos_apps::circuit::{Design, Variable};
    /// let vars = [Variable { name: "cc", lower: 0.2e-12, upper: 10e-12, unit: "F" }];
    /// assert!(Design::from_vector(&vars, &[f64::NAN]).is_err());
    /// assert!(Design::from_vector(&vars, &[]).is_err());
    /// ```
    pub fn from_vector(variables: &[Variable], x: &[f64]) -> Result<Design, DesignError> {
        if variables.len() != x.len() {
            return Err(DesignError::Length { expected: variables.len(), got: x.len() });
        }
        let mut values = Vec::with_capacity(x.len());
        for (v, &value) in variables.iter().zip(x) {
            if !value.is_finite() || !v.contains(value) {
                return Err(DesignError::OutOfBounds { name: v.name, value });
            }
            values.push((v.name, value, v.unit));
        }
        Ok(Design { values })
    }

    /// The value of the variable `name`.
    ///
    /// ```
    /// # use cos_apps::circuit::{Design, Variable};
    /// let vars = [Variable { name: "w1", lower: 1e-6, upper: 1e-4, unit: "m" }];
    /// assert_eq!(Design::from_vector(&vars, &[1e-5]).unwrap().get("w2"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _, _)| *n == name).map(|&(_, v, _)| v)
    }

    /// The variables' names and values, in the variables' order.
    ///
    /// ```
    /// # use cos_apps::circuit::{Design, Variable};
    /// let vars = [Variable { name: "w1", lower: 1e-6, upper: 1e-4, unit: "m" }];
    /// let d = Design::from_vector(&vars, &[1e-5]).unwrap();
    /// assert_eq!(d.iter().collect::<Vec<_>>(), [("w1", 1e-5)]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.values.iter().map(|&(n, v, _)| (n, v))
    }
}

impl fmt::Display for Design {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value, unit)) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name} = {}", engineering(*value, unit))?;
        }
        Ok(())
    }
}

/// One measured performance: its value, or why the measurement failed (a `.meas` that found no
/// crossing, a quantity the simulator could not compute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Measured {
    /// The measured value (finite).
    Value(f64),
    /// The measurement failed; the simulator's reason.
    Failed(String),
}

/// What one simulation measured, by performance name.
///
/// ```
/// use cos_apps::circuit::{Measured, Performances};
/// let mut p = Performances::default();
/// p.insert("gain_db", Measured::Value(78.2));
/// assert_eq!(p.value("gain_db"), Some(78.2));
/// assert_eq!(p.value("ugbw"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Performances {
    values: BTreeMap<String, Measured>,
}

impl Performances {
    /// Sets a performance.
    ///
    /// ```
    /// # use cos_apps::circuit::{Measured, Performances};
    /// let mut p = Performances::default();
    /// p.insert("pm", Measured::Failed("no unity-gain crossing".into()));
    /// assert!(p.get("pm").is_some() && p.value("pm").is_none());
    /// ```
    pub fn insert(&mut self, name: impl Into<String>, value: Measured) {
        self.values.insert(name.into(), value);
    }

    /// A performance, measured or failed; `None` when it was not measured at all.
    ///
    /// ```
    /// # use cos_apps::circuit::Performances;
    /// assert!(Performances::default().get("pm").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<&Measured> {
        self.values.get(name)
    }

    /// A performance's value, when it was measured.
    ///
    /// ```
    /// # use cos_apps::circuit::{Measured, Performances};
    /// let mut p = Performances::default();
    /// p.insert("power", Measured::Value(4.7e-4));
    /// assert_eq!(p.value("power"), Some(4.7e-4));
    /// ```
    pub fn value(&self, name: &str) -> Option<f64> {
        match self.values.get(name) {
            Some(Measured::Value(v)) => Some(*v),
            _ => None,
        }
    }

    /// Every performance, by name.
    ///
    /// ```
    /// # use cos_apps::circuit::Performances;
    /// assert_eq!(Performances::default().iter().count(), 0);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Measured)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// What a target asks of a performance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// At least this value.
    AtLeast(f64),
    /// At most this value.
    AtMost(f64),
}

/// A target for one performance, weighted as PyOPUS's cost definitions are: the violation
/// normalized by `norm` costs `penalty` per unit; beyond the goal, each unit of normalized margin
/// lowers the cost by `tradeoff` (0: meeting the goal is enough).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The performance's name.
    pub measure: &'static str,
    /// What it must reach.
    pub goal: Goal,
    /// The scale of a meaningful difference (positive).
    pub norm: f64,
    /// Cost per unit of normalized violation.
    pub penalty: f64,
    /// Reward per unit of normalized margin beyond the goal.
    pub tradeoff: f64,
    /// The unit, for display.
    pub unit: &'static str,
}

impl Target {
    /// The normalized violation of the goal by `value`: positive when unmet, negative (the
    /// margin) when met.
    ///
    /// ```
    /// use cos_apps::circuit::{Goal, Target};
    /// let t = Target { measure: "pm", goal: Goal::AtLeast(60.0), norm: 10.0, penalty: 1.0, tradeoff: 0.0, unit: "°" };
    /// assert_eq!(t.violation(50.0), 1.0);
    /// assert_eq!(t.violation(70.0), -1.0);
    /// ```
    pub fn violation(&self, value: f64) -> f64 {
        match self.goal {
            Goal::AtLeast(g) => (g - value) / self.norm,
            Goal::AtMost(g) => (value - g) / self.norm,
        }
    }
}

/// A table of performances next to their targets: one line per target with the goal, the
/// measured value and whether it is met. Made by [`report`].
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    performances: &'a Performances,
    targets: &'a [Target],
}

/// The performances `p` next to the targets `targets`, for display.
///
/// ```
/// use cos_apps::circuit::{report, Goal, Measured, Performances, Target};
/// let mut p = Performances::default();
/// p.insert("gain_db", Measured::Value(78.2));
/// let t = [Target { measure: "gain_db", goal: Goal::AtLeast(70.0), norm: 1.0, penalty: 1.0, tradeoff: 0.0, unit: "dB" }];
/// let text = report(&p, &t).to_string();
/// assert!(text.contains("gain_db") && text.contains("met"));
/// ```
pub fn report<'a>(performances: &'a Performances, targets: &'a [Target]) -> Report<'a> {
    Report { performances, targets }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<12} {:>18} {:>18}  status", "performance", "target", "measured")?;
        for t in self.targets {
            let goal = match t.goal {
                Goal::AtLeast(g) => format!(">= {}", engineering(g, t.unit)),
                Goal::AtMost(g) => format!("<= {}", engineering(g, t.unit)),
            };
            let (measured, status) = match self.performances.get(t.measure) {
                Some(Measured::Value(v)) => {
                    (engineering(*v, t.unit), if t.violation(*v) <= 0.0 { "met" } else { "NOT MET" })
                }
                Some(Measured::Failed(why)) => (format!("failed: {why}"), "FAILED"),
                None => ("-".to_string(), "NOT MEASURED"),
            };
            writeln!(f, "{:<12} {goal:>18} {measured:>18}  {status}", t.measure)?;
        }
        Ok(())
    }
}

/// `value` with an SI prefix and `unit`, four significant digits: `2e-5`, `"A"` → `20 µA`.
pub(crate) fn engineering(value: f64, unit: &str) -> String {
    const PREFIXES: [(f64, &str); 9] = [
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
        (1.0, ""),
        (1e-3, "m"),
        (1e-6, "µ"),
        (1e-9, "n"),
        (1e-12, "p"),
        (1e-15, "f"),
    ];
    // Units that read badly with a prefix (dB, degrees, figures of merit) stay unscaled.
    if unit.is_empty() || unit == "dB" || unit == "°" || unit.contains('/') && !unit.starts_with("V/") {
        let text = format!("{value:.2}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        return if unit.is_empty() { text.to_string() } else { format!("{text} {unit}") };
    }
    let magnitude = value.abs();
    let (scale, prefix) = if magnitude == 0.0 || !magnitude.is_finite() {
        (1.0, "")
    } else {
        PREFIXES
            .iter()
            .copied()
            .find(|(s, _)| magnitude >= *s * 0.999_95)
            .unwrap_or(PREFIXES[PREFIXES.len() - 1])
    };
    let scaled = value / scale;
    let decimals = if scaled.abs() >= 100.0 {
        1
    } else if scaled.abs() >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{scaled:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text} {prefix}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engineering_notation() {
        assert_eq!(engineering(20e-6, "A"), "20 µA");
        assert_eq!(engineering(3e-12, "F"), "3 pF");
        assert_eq!(engineering(1.11735e7, "Hz"), "11.17 MHz");
        assert_eq!(engineering(4.721488e-4, "W"), "472.1 µW");
        assert_eq!(engineering(-4.2e-3, "V"), "-4.2 mV");
        assert_eq!(engineering(78.17875, "dB"), "78.18 dB");
        assert_eq!(engineering(60.0, "°"), "60 °");
        assert_eq!(engineering(0.0, "V"), "0 V");
    }

    #[test]
    fn report_marks_unmet_failed_and_missing_targets() {
        let mut p = Performances::default();
        p.insert("gain_db", Measured::Value(60.0));
        p.insert("pm", Measured::Failed("no crossing".into()));
        let t = |m, goal| Target { measure: m, goal, norm: 1.0, penalty: 1.0, tradeoff: 0.0, unit: "" };
        let targets =
            [t("gain_db", Goal::AtLeast(70.0)), t("pm", Goal::AtLeast(60.0)), t("ugbw", Goal::AtLeast(1.0))];
        let text = report(&p, &targets).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].ends_with("NOT MET"), "{text}");
        assert!(lines[2].ends_with("FAILED"), "{text}");
        assert!(lines[3].ends_with("NOT MEASURED"), "{text}");
    }
}

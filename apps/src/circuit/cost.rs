//! The cost of a design, from its performances against the targets, as PyOPUS's design demos
//! build it: each target adds its normalized violation times its penalty when unmet, and its
//! normalized margin times its (usually small or zero) tradeoff weight, a reward, when met; a
//! performance that could not be measured adds [`FAILED_MEASURE`]. Zero or less: every target
//! met.

use super::design::{Measured, Performances, Target};

/// What a target whose performance failed (or was not measured) adds to the cost: more than any
/// plausible violation, so that a design that measures beats one that does not.
pub const FAILED_MEASURE: f64 = 1e4;

/// One target's part of the cost of `p`.
///
/// ```
/// use cos_apps::circuit::{contribution, Goal, Measured, Performances, Target};
/// let t = Target { measure: "gain_db", goal: Goal::AtLeast(70.0), norm: 10.0, penalty: 1.0, tradeoff: 0.0, unit: "dB" };
/// let mut p = Performances::default();
/// p.insert("gain_db", Measured::Value(50.0));
/// assert_eq!(contribution(&p, &t), 2.0);
/// ```
pub fn contribution(p: &Performances, target: &Target) -> f64 {
    match p.get(target.measure) {
        Some(Measured::Value(v)) => {
            let x = target.violation(*v);
            if x > 0.0 {
                target.penalty * x
            } else {
                target.tradeoff * x
            }
        }
        Some(Measured::Failed(_)) | None => FAILED_MEASURE,
    }
}

/// The cost of `p` against `targets`: the sum of the targets' contributions.
///
/// ```
/// use cos_apps::circuit::{cost, Goal, Measured, Performances, Target};
/// let t = |m, goal| Target { measure: m, goal, norm: 1.0, penalty: 1.0, tradeoff: 0.0, unit: "" };
/// let targets = [t("a", Goal::AtLeast(1.0)), t("b", Goal::AtMost(1.0))];
/// let mut p = Performances::default();
/// p.insert("a", Measured::Value(2.0));
/// p.insert("b", Measured::Value(3.0));
/// assert_eq!(cost(&p, &targets), 2.0);
/// ```
pub fn cost(p: &Performances, targets: &[Target]) -> f64 {
    targets.iter().map(|t| contribution(p, t)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::design::Goal;

    fn target(goal: Goal, tradeoff: f64) -> Target {
        Target { measure: "x", goal, norm: 2.0, penalty: 3.0, tradeoff, unit: "" }
    }

    fn perf(v: Measured) -> Performances {
        let mut p = Performances::default();
        p.insert("x", v);
        p
    }

    #[test]
    fn unmet_targets_cost_their_normalized_violation_times_the_penalty() {
        assert_eq!(contribution(&perf(Measured::Value(6.0)), &target(Goal::AtLeast(10.0), 0.0)), 6.0);
        assert_eq!(contribution(&perf(Measured::Value(14.0)), &target(Goal::AtMost(10.0), 0.0)), 6.0);
    }

    #[test]
    fn met_targets_give_their_margin_times_the_tradeoff() {
        assert_eq!(contribution(&perf(Measured::Value(14.0)), &target(Goal::AtLeast(10.0), 0.0)), 0.0);
        assert_eq!(contribution(&perf(Measured::Value(14.0)), &target(Goal::AtLeast(10.0), 0.5)), -1.0);
    }

    #[test]
    fn failed_and_missing_measures_cost_more_than_a_bad_value() {
        let t = target(Goal::AtLeast(10.0), 0.0);
        let failed = contribution(&perf(Measured::Failed("no crossing".into())), &t);
        assert_eq!(failed, FAILED_MEASURE);
        assert_eq!(contribution(&Performances::default(), &t), FAILED_MEASURE);
        assert!(failed > contribution(&perf(Measured::Value(-1000.0)), &t));
    }
}

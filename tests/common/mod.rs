//! The check runner of the tests that have their own `main` (they start their executable again
//! as worker processes, so they cannot use the test harness).

use std::panic::{self, AssertUnwindSafe};

/// Runs each check, finalizing the machine after each, prints a line per check and the closing
/// `N passed, M failed` line, and exits non-zero when a check failed.
pub fn run_checks(checks: &[(&str, fn())]) {
    let mut failed = 0;
    for (name, check) in checks {
        let ok = panic::catch_unwind(AssertUnwindSafe(check)).is_ok();
        cos::finalize();
        println!("check {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    println!("{} passed, {failed} failed", checks.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

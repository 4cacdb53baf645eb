//! Convergence outputs: a CSV table and a hand-written SVG plot of the best cost.

use std::fmt::Write;

/// The convergence history as CSV: a header, then `evaluation,best_cost` rows, evaluations
/// counted from 1.
///
/// ```
/// let csv = cos_apps::optimize::history_csv(&[4.0, 2.5]);
/// assert_eq!(csv, "evaluation,best_cost\n1,4\n2,2.5\n");
/// ```
pub fn history_csv(history: &[f64]) -> String {
    let mut s = String::from("evaluation,best_cost\n");
    for (i, f) in history.iter().enumerate() {
        // The shortest text that reads back as the same number, without a trailing ".0".
        let text = format!("{f:?}");
        let _ = writeln!(s, "{},{}", i + 1, text.strip_suffix(".0").unwrap_or(&text));
    }
    s
}

const W: f64 = 760.0;
const H: f64 = 480.0;
const LEFT: f64 = 88.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 64.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A step of 1, 2 or 5 times a power of ten giving about `n` intervals over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

/// An SVG plot of a convergence history (`history[k]`: best cost after evaluation `k + 1`):
/// best cost on a logarithmic axis against evaluations, with axes, ticks, labels and `title`.
/// Costs that are not positive are drawn at the bottom of the axis; infinite and NaN ones are
/// left out.
///
/// ```
/// let svg = cos_apps::optimize::convergence_svg(&[100.0, 10.0, 10.0, 0.5], "Rosenbrock");
/// assert!(svg.starts_with("<svg"));
/// assert!(svg.contains("Rosenbrock") && svg.contains("<polyline"));
/// ```
pub fn convergence_svg(history: &[f64], title: &str) -> String {
    let finite = || history.iter().copied().filter(|f| f.is_finite());
    let positive = || finite().filter(|f| *f > 0.0);
    let lo_val = positive().fold(f64::INFINITY, f64::min);
    let hi_val = positive().fold(0.0, f64::max);
    let (mut y0, mut y1) =
        if lo_val.is_finite() { (lo_val.log10().floor(), hi_val.log10().ceil()) } else { (-1.0, 0.0) };
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    if finite().any(|f| f <= 0.0) {
        y0 -= 1.0;
    }
    let n = history.len().max(1) as f64;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |e: f64| LEFT + e / n * pw;
    let py = |f: f64| {
        let l = if f > 0.0 { f.log10().max(y0) } else { y0 };
        TOP + (y1 - l) / (y1 - y0) * ph
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        W / 2.0,
        escape(title)
    );

    // Decades on the y axis (every k-th labelled when there are many), with grid lines.
    let decades = (y1 - y0) as i64;
    let every = decades / 16 + 1;
    for d in 0..=decades {
        let e = y0 as i64 + d;
        let y = py(10f64.powi(e as i32));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><line x1="{}" x2="{LEFT}" y1="{y:.1}" y2="{y:.1}" stroke="black"/>"##,
            LEFT + pw,
            LEFT - 6.0
        );
        if d % every == 0 {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">10<tspan dy="-7" font-size="10">{e}</tspan></text>"#,
                LEFT - 9.0,
                y + 5.0
            );
        }
    }
    // Evaluations on the x axis.
    let step = nice_step(n, 6.0);
    let mut t = 0.0;
    while t <= n + 0.5 {
        let x = px(t);
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" text-anchor="middle">{t}</text>"#,
            TOP + ph,
            TOP + ph + 6.0,
            TOP + ph + 22.0
        );
        t += step;
    }
    let _ =
        writeln!(s, r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">evaluations</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(24 {}) rotate(-90)" text-anchor="middle">best cost (log scale)</text>"#,
        TOP + ph / 2.0
    );

    // The best cost as a step line: a point where it changes, and one at the end.
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut last: Option<f64> = None;
    for (i, &f) in history.iter().enumerate() {
        if !f.is_finite() || last == Some(f) {
            continue;
        }
        let x = px(i as f64 + 1.0);
        if let Some(prev) = last {
            points.push((x, py(prev)));
        }
        points.push((x, py(f)));
        last = Some(f);
    }
    if let Some(f) = last {
        points.push((px(n), py(f)));
    }
    let mut line = String::new();
    for (x, y) in &points {
        let _ = write!(line, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##,
        line.trim_end()
    );
    s.push_str("</svg>\n");
    s
}

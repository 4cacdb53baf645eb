//! Port of PyOPUS demo `demo/parallel/cooperative/01-context.py`: two local tasks print and
//! yield in turn; the main program joins them as they finish.
//!
//! Run with `cargo run --example context`.

use std::collections::BTreeSet;

/// Prints `msg : i` for i in 0..n, yielding after each line, and returns n.
fn print_msg(msg: &str, n: u32) -> u32 {
    for i in 0..n {
        println!("{msg} : {i}");
        cos::yield_now();
    }
    n
}

fn main() -> Result<(), cos::Error> {
    let a = cos::spawn(|| print_msg("Hello A", 10))?;
    let b = cos::spawn(|| print_msg("Hello B", 20))?;

    let mut running: BTreeSet<cos::Tid> = [a.tid(), b.tid()].into();
    let shown: Vec<String> = running.iter().map(|t| t.to_string()).collect();
    println!("Running tasks: {{{}}}", shown.join(", "));

    while !running.is_empty() {
        // Wait for any child; `cos::join_list(&tids, true)` waits for listed ones.
        if let Some(joined) = cos::join_any()? {
            running.remove(&joined.tid);
            let tid = joined.tid;
            println!("Task {tid} finished, return value: {}", joined.value::<u32>()?);
        }
    }
    Ok(())
}

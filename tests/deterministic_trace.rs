//! The same program gives the same scheduling: run twice, each time on a fresh thread with its
//! own cooperative OS, it produces the same trace of the scheduler's `log` records.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Once;

use log::{LevelFilter, Log, Metadata, Record};

thread_local! {
    /// This thread's records of target `cos`.
    static TRACE: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Keeps the records of target `cos`, per thread.
struct TraceLogger;

impl Log for TraceLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.target() == "cos"
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            // The thread's storage may be gone while the thread ends; those records are not kept.
            let _ = TRACE.try_with(|t| t.borrow_mut().push(line));
        }
    }

    fn flush(&self) {}
}

static LOGGER: TraceLogger = TraceLogger;
static INIT: Once = Once::new();

fn install_logger() {
    INIT.call_once(|| {
        log::set_logger(&LOGGER).expect("no other logger in this test");
        log::set_max_level(LevelFilter::Trace);
    });
}

/// Runs `program` on a new thread and returns the thread's trace and the program's result.
fn traced<R: Send + 'static>(program: fn() -> R) -> (Vec<String>, R) {
    install_logger();
    std::thread::spawn(move || {
        let r = program();
        (TRACE.with(|t| t.take()), r)
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn worker(id: u32, n: u32, out: Rc<RefCell<Vec<String>>>) -> u32 {
    let mut sum = 0;
    for i in 0..n {
        out.borrow_mut().push(format!("worker {id} step {i}"));
        if i % 2 == 0 {
            // A nested task now and then, joined at once or left for later.
            let t = cos::spawn(move || {
                cos::yield_now();
                id * 100 + i
            })
            .unwrap();
            sum += cos::join(t).unwrap();
        } else {
            cos::spawn(move || id + i).unwrap();
        }
        cos::yield_now();
    }
    while let Some(j) = cos::join_any().unwrap() {
        sum += j.value::<u32>().unwrap();
    }
    sum
}

/// A mix of spawns, yields, blocking and non-blocking joins, nested tasks and an orphan.
fn program() -> (Vec<String>, u32) {
    let out = Rc::new(RefCell::new(Vec::new()));
    let a = cos::spawn({
        let o = out.clone();
        move || worker(1, 5, o)
    })
    .unwrap();
    let b = cos::spawn({
        let o = out.clone();
        move || worker(2, 3, o)
    })
    .unwrap();
    cos::yield_now();
    // A task that leaves an orphan behind.
    let c = cos::spawn(|| {
        cos::spawn(|| {
            for _ in 0..3 {
                cos::yield_now();
            }
        })
        .unwrap();
        7u32
    })
    .unwrap();
    let mut total = 0;
    if let Some(v) = cos::try_join(b).unwrap() {
        total += v;
    }
    total += cos::join(c).unwrap();
    total += cos::join(a).unwrap();
    // B, unless the non-blocking join above got it.
    while let Some(j) = cos::join_any().unwrap() {
        total += j.value::<u32>().unwrap();
    }
    while cos::task_count() > 1 {
        cos::yield_now();
    }
    let out = out.borrow().clone();
    (out, total)
}

#[test]
fn the_same_program_gives_the_same_trace() {
    let (first, r1) = traced(program);
    let (second, r2) = traced(program);
    assert_eq!(r1, r2);
    assert!(!first.is_empty());
    assert_eq!(first, second);

    // The trace is the scheduler's own account of the run.
    assert_eq!(first[0], "DEBUG task 1 spawned local task 2");
    assert!(first.iter().any(|l| l.contains("spawned local task")));
    assert!(first.iter().any(|l| l.ends_with("scheduled")));
    assert!(first.iter().any(|l| l.contains("waits in join")));
    assert!(first.iter().any(|l| l.contains("value delivered")));
    assert!(first.iter().any(|l| l.contains("orphan task")));
    assert!(first.iter().all(|l| l.starts_with("DEBUG ") || l.starts_with("TRACE ")));
    let spawned = first.iter().filter(|l| l.contains("spawned local task")).count();
    let finished =
        first.iter().filter(|l| l.starts_with("DEBUG local task") && l.ends_with("finished")).count();
    assert_eq!(spawned, finished, "every task ran to its end");

    // The program's own output agrees too.
    let (out, total) = r1;
    assert_eq!(out.len(), 5 + 3);
    // Worker 1: 100 + 102 + 104 joined at once, 1 + 1 and 1 + 3 at the end; worker 2: 200 + 202
    // and 2 + 1; task C: 7.
    assert_eq!(total, (306 + 2 + 4) + (402 + 3) + 7);
}

#[test]
fn traces_of_different_programs_differ() {
    fn other() -> (Vec<String>, u32) {
        let t = cos::spawn(|| 1u32).unwrap();
        (Vec::new(), cos::join(t).unwrap())
    }
    let (a, _) = traced(program);
    let (b, _) = traced(other);
    assert!(!b.is_empty());
    assert_ne!(a, b);
}

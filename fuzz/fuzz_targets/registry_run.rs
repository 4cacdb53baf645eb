//! A worker running arbitrary call bytes: the registry must answer every call with a value or a
//! `RemoteFailure` (unknown function, bad arguments), never panic itself.
#![no_main]

use cos::{Registry, RemoteCall, RemoteErrorKind, RemoteFn};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Shape {
    Point,
    Circle { r: f64 },
    Poly(Vec<(i32, i32)>),
}

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    weights: Vec<f32>,
    shape: Option<Shape>,
    flag: bool,
    bytes: Vec<u8>,
}

static SCORE: RemoteFn<Job, (u64, usize)> = RemoteFn::new("score", |j: Job| {
    let n = j.name.len() + j.weights.len() + j.bytes.len() + usize::from(j.flag);
    let extra = match j.shape {
        Some(Shape::Poly(p)) => p.len(),
        Some(Shape::Circle { r }) => usize::from(r > 0.0),
        Some(Shape::Point) | None => 0,
    };
    (j.id, n + extra)
});
static PAIR: RemoteFn<(u8, String), u32> = RemoteFn::new("pair", |(a, s)| u32::from(a) + s.len() as u32);

fuzz_target!(|data: &[u8]| {
    let registry = Registry::new().with(&SCORE).with(&PAIR);
    // The arguments as bytes for each registered function.
    for name in ["score", "pair"] {
        let call =
            RemoteCall { function: name.to_string().into(), args: data.to_vec(), send_back: true, signature: None };
        match registry.run(&call) {
            Ok(bytes) => assert!(!bytes.is_empty()),
            Err(f) if f.kind == RemoteErrorKind::BadArguments => {}
            Err(other) => panic!("{name}: unexpected failure {other:?}"),
        }
    }
    // A whole encoded call, as it crosses to a worker.
    if let Ok(call) = postcard::from_bytes::<RemoteCall>(data) {
        match registry.run(&call) {
            Ok(_) => {}
            Err(f) => match f.kind {
                RemoteErrorKind::BadArguments => {}
                RemoteErrorKind::UnknownFunction | RemoteErrorKind::SignatureMismatch => {
                    assert_eq!(f.message, call.function)
                }
                other => panic!("registered functions neither panic nor overflow here: {other:?} {f:?}"),
            },
        }
    }
});

//! Frames from a worker: a byte stream cut into length-prefixed frames (4-byte little-endian
//! length, then the bytes, as the process machine sends them), each decoded as the
//! `(TaskId, Message)` the spawner reads. Decoding must fail cleanly, never panic or allocate
//! without bound, and whatever decodes must encode back to a frame that decodes the same.
#![no_main]

use cos::{Message, TaskId};
use libfuzzer_sys::fuzz_target;

/// The process machine's largest frame.
const MAX_FRAME: usize = 256 << 20;

fn check(frame: &[u8]) {
    // The strict decoding the machines use: every byte must be used.
    if let Ok((v, [])) = postcard::take_from_bytes::<(TaskId, Message)>(frame) {
        let again = postcard::to_stdvec(&v).expect("a decoded message encodes");
        let back: (TaskId, Message) = postcard::from_bytes(&again).expect("an encoded message decodes");
        assert_eq!(back, v);
    }
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one frame body, then as a stream of frames.
    check(data);
    let mut rest = data;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        if len > MAX_FRAME || len > rest.len() {
            break;
        }
        let (frame, tail) = rest.split_at(len);
        check(frame);
        rest = tail;
    }
});

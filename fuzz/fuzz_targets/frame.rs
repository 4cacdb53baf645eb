//! Streams from a worker, fed to the process machine's real frame codec (`read_frame` /
//! `write_frame`, the 4-byte little-endian length and the bytes) and decoded as the frames the
//! spawner reads. Decoding must fail cleanly, never panic or allocate without bound, and
//! whatever decodes must encode back to a frame that decodes the same
//! (`cos::fuzz_spawner_stream` checks it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cos::fuzz_spawner_stream(data);
});

//! Arbitrary bytes into the journal's frame reader: it must never panic, and whatever record it
//! accepts must re-encode to exactly the bytes it was read from and read back as the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_journal::fuzzing;

fuzz_target!(|data: &[u8]| {
    // The bytes as found on disk: a frame, or damage, at the start of the buffer.
    check(data);
    // The bytes as a body under a correct length and CRC32. Random bytes almost never pass the
    // checksum, so this is what drives the fuzzer into the field decoder.
    if let Some(frame) = fuzzing::frame(data) {
        check(&frame);
    }
});

fn check(bytes: &[u8]) {
    if let Some((_record, len)) = fuzzing::decode_frame(bytes) {
        assert!(
            len <= bytes.len(),
            "frame of {len} bytes read from {} bytes",
            bytes.len()
        );
    }
    if let Err(mismatch) = fuzzing::roundtrip(bytes) {
        panic!("{mismatch}");
    }
}

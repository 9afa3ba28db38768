//! One core fed an arbitrary script of inputs from arbitrary peers at arbitrary times
//! (body in `quicswim_proto::fuzzing`).
#![no_main]
use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

// One epoch for the whole run: the core's behaviour depends only on time differences.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let epoch = *EPOCH.get_or_init(Instant::now);
    quicswim_proto::fuzzing::core(data, epoch)
});

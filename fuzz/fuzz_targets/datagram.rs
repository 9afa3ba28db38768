//! The datagram decoder on arbitrary bytes (body in `quicswim_proto::fuzzing`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quicswim_proto::fuzzing::datagram(data));

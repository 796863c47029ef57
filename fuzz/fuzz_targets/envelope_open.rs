#![no_main]
//! Fuzz target `envelope_open`: see `edge_fuzz::check_envelope`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::check_envelope(data));

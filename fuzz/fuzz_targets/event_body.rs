#![no_main]
//! Fuzz target `event_body`: see `edge_fuzz::check_event_body`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::check_event_body(data));

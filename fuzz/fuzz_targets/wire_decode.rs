#![no_main]
//! Fuzz target `wire_decode`: see `edge_fuzz::check_wire`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::check_wire(data));

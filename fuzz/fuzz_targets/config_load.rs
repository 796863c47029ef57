#![no_main]
//! Fuzz target `config_load`: see `edge_fuzz::check_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::check_config(data));

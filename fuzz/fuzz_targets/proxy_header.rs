#![no_main]
//! Fuzz target `proxy_header`: see `edge_fuzz::check_proxy_header`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::check_proxy_header(data));

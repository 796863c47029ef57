#![no_main]
//! Fuzz target `pixel_query`: see `edge_fuzz::check_pixel_query`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_fuzz::check_pixel_query(data));

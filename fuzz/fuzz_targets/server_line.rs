//! `cargo fuzz run server_line`: see `natter_fuzz::server_line` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| natter_fuzz::server_line(data));

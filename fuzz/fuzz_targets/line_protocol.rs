//! `cargo fuzz run line_protocol`: see `natter_fuzz::line_protocol` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| natter_fuzz::line_protocol(data));

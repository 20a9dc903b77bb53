//! `cargo fuzz run irc_message`: see `natter_fuzz::irc_message` for the input and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| natter_fuzz::irc_message(data));

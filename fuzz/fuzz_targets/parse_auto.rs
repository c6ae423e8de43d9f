//! Format detection (`auto`): every line goes to the format it looks like, and gets what that
//! format alone would make of it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil_fuzz::formats::check_auto(data));

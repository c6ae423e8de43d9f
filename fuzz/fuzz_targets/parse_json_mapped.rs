//! The generic `json` format with a field mapping taken from the input's first line (see
//! `vigil_fuzz::formats::check_json_mapped`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil_fuzz::formats::check_json_mapped(data));

//! JWT handling: bearer parsing, ingest's unverified claims and enforce's verification of the
//! same token (see `vigil_fuzz::jwt`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil_fuzz::jwt::check_jwt(data));

//! The forward-auth check request (NGINX `auth_request`, Traefik ForwardAuth, Envoy
//! `ext_authz`) and subject extraction from its headers (see `vigil_fuzz::http`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil_fuzz::http::check_request(data));

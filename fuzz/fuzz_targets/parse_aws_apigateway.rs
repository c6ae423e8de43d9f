//! The `aws-apigateway` log format: records, normalization and event rows (see
//! `vigil_fuzz::formats`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_ingest::formats::FormatName;

fuzz_target!(|data: &[u8]| vigil_fuzz::formats::check_format(FormatName::AwsApigateway, data));

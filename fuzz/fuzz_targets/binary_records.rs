#![no_main]
//! Arbitrary bytes as a whole binary log, read in every recovery mode.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hyperlog_fuzz::read_all_ways(data, Some(hyperlog::LogFormat::Binary));
    // Format detection on the same bytes.
    hyperlog_fuzz::read_all_ways(data, None);
    let _ = hyperlog::format::detect_format(data, data.len() as u64, hyperlog_fuzz::MAX_RECORD);
    let _ = hyperlog::format::detect_complete(data, data.len() as u64, hyperlog_fuzz::MAX_RECORD);
});

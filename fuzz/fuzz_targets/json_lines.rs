#![no_main]
//! Arbitrary bytes as a whole JSON-lines log, read in every recovery mode.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hyperlog_fuzz::read_all_ways(data, Some(hyperlog::LogFormat::Json));
    for line in data.split(|&c| c == b'\n') {
        let _ = hyperlog::format::check_json_line(line);
        if let Some(Some(lsn)) = hyperlog::format::json_tail_lsn(line) {
            // The LSN is the number in the line's `"lsn":N}` tail.
            let body = line.strip_suffix(b"}").expect("a tail LSN ends in '}'");
            let digits = body.iter().rev().take_while(|c| c.is_ascii_digit()).count();
            let (head, num) = body.split_at(body.len() - digits);
            assert!(head.ends_with(b"\"lsn\":"));
            let n: u64 = std::str::from_utf8(num).unwrap().parse().unwrap();
            assert_eq!(n, lsn.get());
        }
    }
});

#![no_main]
//! The retention parsers on arbitrary strings.

use arbitrary::Arbitrary;
use hyperlog::RetentionPolicy;
use hyperlog::retention::{format_age, format_size, parse_age, parse_size, parse_time_of_day};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    text: &'a str,
    map: Vec<(&'a str, &'a str)>,
    keyed: Vec<(u8, &'a str)>,
}

const KEYS: [&str; 7] = [
    "max_size",
    "max_age",
    "rotation_time",
    "max_archives",
    "max_archive_age",
    "compression",
    "delete_wal_segments",
];

fuzz_target!(|input: Input<'_>| {
    let s = input.text;
    if let Ok(n) = parse_size(s) {
        let f = format_size(n);
        assert_eq!(
            parse_size(&f),
            Ok(n),
            "format_size({n}) = {f:?} does not read back"
        );
    } else if let Err(e) = parse_size(s) {
        // The error names the value, cut to 64 characters (documented).
        match s.char_indices().nth(64) {
            Some((end, _)) => assert_eq!(e.value(), format!("{}...", &s[..end])),
            None => assert_eq!(e.value(), s),
        }
        let _ = e.to_string();
    }
    if let Ok(d) = parse_age(s) {
        let f = format_age(d);
        assert_eq!(
            parse_age(&f),
            Ok(d),
            "format_age({d:?}) = {f:?} does not read back"
        );
    }
    if let Ok(t) = parse_time_of_day(s) {
        assert_eq!(
            parse_time_of_day(&t.to_string()),
            Ok(t),
            "{t} does not read back"
        );
    }
    let _ = RetentionPolicy::from_map(input.map.iter().copied());
    // Known keys with fuzzed values, to get past the key check.
    let keyed: Vec<(&str, &str)> = input
        .keyed
        .iter()
        .map(|(k, v)| (KEYS[*k as usize % KEYS.len()], *v))
        .collect();
    if let Ok(p) = RetentionPolicy::from_map(keyed.iter().copied()) {
        let _ = (p.rotates(), p.prunes());
    }
});

#![no_main]
//! Template::parse on arbitrary text, then render with arbitrary values.

use arbitrary::Arbitrary;
use hyperlog::Template;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    source: &'a str,
    extra: Vec<&'a str>,
    values: Vec<Option<&'a str>>,
}

fuzz_target!(|input: Input<'_>| {
    let extra: Vec<&str> = input.extra.iter().take(8).copied().collect();
    let Ok(t) = Template::parse(input.source, &extra) else {
        return;
    };
    assert_eq!(t.as_str(), input.source);
    // Parsing is deterministic.
    assert_eq!(
        Template::parse(input.source, &extra).ok().as_ref(),
        Some(&t)
    );
    // Bound the padding a fuzzer-chosen width can ask for.
    let mut out = String::new();
    let mut n = 0usize;
    let fields: Vec<String> = t.fields().map(str::to_string).collect();
    for f in &fields {
        assert!(
            hyperlog::template::METADATA_FIELDS.contains(&f.as_str())
                || hyperlog::template::ENTRY_FIELDS.contains(&f.as_str())
                || extra.contains(&f.as_str())
        );
    }
    if input.source.len() > 4096 {
        return;
    }
    // Widths can be huge (e.g. {message:999999999}); rendering them would only
    // test the allocator, so skip sources with long digit runs.
    let digits = input
        .source
        .as_bytes()
        .split(|c| !c.is_ascii_digit())
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    if digits > 5 {
        return;
    }
    t.render(&mut out, |_name, value| {
        let v = input.values.get(n).copied().flatten();
        n += 1;
        match v {
            Some(s) => {
                value.push_str(s);
                true
            }
            None => false,
        }
    });
    let _ = t.needs_entry();
});

//! Shared checks for the log-decoder fuzz targets.

use std::path::Path;
use std::sync::Arc;

use hyperlog::format::{HEADER_LEN, check_binary, check_json_line, encode_binary};
use hyperlog::fs::SimFs;
use hyperlog::{
    LogFormat, ReadOptions, RecoveryMode, read_entries_blocking, read_records, scan_log,
};

/// A small record limit, so that length fields are often out of range.
pub const MAX_RECORD: u64 = 4096;

/// The recovery modes every input is read in.
pub const MODES: [RecoveryMode; 3] = [
    RecoveryMode::TolerateTail,
    RecoveryMode::AbsoluteConsistency,
    RecoveryMode::SkipCorrupted,
];

/// Puts `data` as a whole file on a fresh `SimFs` and reads it in every
/// recovery mode, with `format` forced (or detected when `None`), checking
/// that every record returned is intact.
pub fn read_all_ways(data: &[u8], format: Option<LogFormat>) {
    let fs = Arc::new(SimFs::new());
    let path = Path::new("/fuzz/input.log");
    fs.put(path, data);
    for mode in MODES {
        let mut opts = ReadOptions::new()
            .recovery(mode)
            .max_record_size(MAX_RECORD)
            .file_system(fs.clone());
        if let Some(f) = format {
            opts = opts.format(f);
        }

        // Raw records: each must be intact where it says it is.
        let mut iter = read_records(path, 0, opts.clone());
        let fmt = iter.format();
        let mut last_end = 0u64;
        let mut offsets = Vec::new();
        for item in iter.by_ref() {
            let Ok(r) = item else { break };
            assert!(
                r.offset >= last_end,
                "records overlap: {} < {last_end}",
                r.offset
            );
            assert!(r.end > r.offset && r.end as usize <= data.len());
            let bytes = &data[r.offset as usize..r.end as usize];
            match fmt.expect("a reader that yields records knows its format") {
                LogFormat::Binary => {
                    let h = check_binary(bytes, bytes.len() as u64, MAX_RECORD)
                        .expect("a returned binary record has a valid CRC");
                    assert_eq!(HEADER_LEN + h.len as usize, bytes.len());
                    assert_eq!(&bytes[HEADER_LEN..], &r.payload[..]);
                    // Re-encoding the payload with the header's LSN gives
                    // back exactly the stored record.
                    let mut again = Vec::new();
                    encode_binary(&r.payload, h.lsn(), &mut again);
                    assert_eq!(again, bytes, "re-encoded record differs");
                    assert!(check_binary(&again, again.len() as u64, MAX_RECORD).is_ok());
                    if let Some(l) = h.lsn() {
                        assert_eq!(r.lsn, Some(l));
                    }
                }
                LogFormat::Json => {
                    assert_eq!(bytes.last(), Some(&b'\n'));
                    assert_eq!(&bytes[..bytes.len() - 1], &r.payload[..]);
                    assert!(!r.payload.contains(&b'\n'));
                    assert!(r.payload.len() as u64 <= MAX_RECORD);
                    assert!(
                        check_json_line(&r.payload).is_ok(),
                        "a returned JSON line is JSON"
                    );
                }
            }
            if mode != RecoveryMode::SkipCorrupted {
                // Without skipping, records are contiguous from the start.
                assert_eq!(r.offset, last_end, "a gap in mode {mode:?}");
            }
            offsets.push(r.offset);
            last_end = r.end;
        }
        for s in iter.skipped() {
            assert!(s.start < s.end && s.end as usize <= data.len());
        }
        if mode != RecoveryMode::SkipCorrupted {
            assert!(iter.skipped().is_empty());
        }

        // Decoded entries: no panic; each comes from a record found above.
        let mut prev = None;
        for item in read_entries_blocking::<serde_json::Value>(path, 0, opts.clone()) {
            let Ok((offset, _log, _lsn)) = item else {
                break;
            };
            assert!(prev.is_none_or(|p| offset > p));
            assert!(
                offsets.contains(&offset),
                "entry at {offset} is not a record"
            );
            prev = Some(offset);
        }

        // The scan agrees with the raw iterator.
        if let Ok(sum) = scan_log(&*fs, path, format, MAX_RECORD, mode) {
            assert!(sum.valid_len <= sum.file_len);
            assert_eq!(sum.file_len, data.len() as u64);
        }

        // Seeking to each record boundary works.
        for &o in offsets.iter().take(4) {
            let mut it = read_records(path, o, opts.clone());
            if let Some(Ok(r)) = it.next() {
                assert_eq!(r.offset, o);
            }
        }
    }
}

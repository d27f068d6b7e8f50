//! Segmented write-ahead logs: naming and finding sealed segments.
//!
//! A write-ahead log (a context that syncs or carries LSNs) with a rotating
//! retention policy does not archive its live file: it seals it, uncompressed
//! and readable, as a *segment* beside it:
//!
//! ```text
//! data/node.wal                                  the live file
//! data/node.00000001.00007531014860063113216.wal segment 1, first LSN 7531014860063113216
//! data/node.00000002.00007531014861234567890.wal segment 2
//! ```
//!
//! `{stem}.{id:08}.{first_lsn:020}.{ext}`: the id is a counter with no gaps
//! (so a missing segment is visible), the first LSN (0 without LSNs) lets a
//! reader seeking an LSN pick the segment from the names alone. Readers of
//! the log's path read the segments in id order, then the live file.

use std::path::{Path, PathBuf};

use crate::Lsn;
use crate::fs::{FileSystem, parent_dir};

/// One sealed segment of a log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    /// Its position in the log, from 1, without gaps.
    pub id: u64,
    /// The LSN of its first entry (`None` without LSNs).
    pub first_lsn: Option<Lsn>,
    /// Where it is.
    pub path: PathBuf,
}

/// The stem and extension segment names of `live` use.
fn parts(live: &Path) -> Option<(String, String)> {
    let stem = live.file_stem()?.to_str()?.to_string();
    let ext = live
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_string();
    Some((stem, ext))
}

/// The path of segment `id` of the log at `live`.
pub fn segment_path(live: &Path, id: u64, first_lsn: Option<Lsn>) -> PathBuf {
    let (stem, ext) = parts(live).unwrap_or_else(|| ("log".into(), String::new()));
    let first = first_lsn.map_or(0, Lsn::get);
    parent_dir(live).join(format!("{stem}.{id:08}.{first:020}.{ext}"))
}

/// Reads `(id, first LSN)` from a segment's file name, for the log whose
/// live file is `live`.
pub fn parse_segment_name(live: &Path, file_name: &str) -> Option<(u64, Option<Lsn>)> {
    let (stem, ext) = parts(live)?;
    let rest = file_name.strip_prefix(&format!("{stem}."))?;
    let rest = rest.strip_suffix(&format!(".{ext}"))?;
    let (id, first) = rest.split_once('.')?;
    if id.len() != 8
        || first.len() != 20
        || !id.bytes().chain(first.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let first: u64 = first.parse().ok()?;
    Some((id.parse().ok()?, (first != 0).then_some(Lsn::new(first))))
}

/// The sealed segments of the log at `live`, in id order (empty when the
/// log is not segmented or the directory cannot be listed).
pub fn list_segments(fs: &dyn FileSystem, live: &Path) -> Vec<Segment> {
    let dir = parent_dir(live);
    let mut v: Vec<Segment> = fs
        .list_dir(&dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| {
            parse_segment_name(live, &n).map(|(id, first_lsn)| Segment {
                id,
                first_lsn,
                path: dir.join(n),
            })
        })
        .collect();
    v.sort();
    v
}

/// Checks that segment ids have no gaps and first LSNs increase; returns
/// the first segment that breaks the chain and why.
pub fn check_chain(segments: &[Segment]) -> Result<(), (PathBuf, String)> {
    for w in segments.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.id != a.id + 1 {
            return Err((
                b.path.clone(),
                format!(
                    "segment {} is missing between segments {} and {}",
                    a.id + 1,
                    a.id,
                    b.id
                ),
            ));
        }
        if let (Some(x), Some(y)) = (a.first_lsn, b.first_lsn)
            && y <= x
        {
            return Err((
                b.path.clone(),
                format!(
                    "segment {} starts at LSN {y}, not above segment {}'s first LSN {x}",
                    b.id, a.id
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        let live = Path::new("/d/node.wal");
        let p = segment_path(live, 3, Some(Lsn::new(42)));
        assert_eq!(p, Path::new("/d/node.00000003.00000000000000000042.wal"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            parse_segment_name(live, name),
            Some((3, Some(Lsn::new(42))))
        );
        assert_eq!(parse_segment_name(live, "node.wal"), None);
        assert_eq!(
            parse_segment_name(live, "other.00000003.00000000000000000042.wal"),
            None
        );
        assert_eq!(
            parse_segment_name(
                Path::new("/d/node.log.json"),
                "node.log.00000001.00000000000000000000.json"
            ),
            Some((1, None))
        );
    }

    #[test]
    fn chain_reports_gaps_and_disorder() {
        let s = |id, lsn: u64| Segment {
            id,
            first_lsn: Some(Lsn::new(lsn)),
            path: PathBuf::from(format!("s{id}")),
        };
        assert!(check_chain(&[s(1, 10), s(2, 20), s(3, 30)]).is_ok());
        let e = check_chain(&[s(1, 10), s(3, 30)]).unwrap_err();
        assert!(e.1.contains("segment 2 is missing"), "{}", e.1);
        let e = check_chain(&[s(1, 10), s(2, 5)]).unwrap_err();
        assert!(e.1.contains("not above"), "{}", e.1);
    }
}

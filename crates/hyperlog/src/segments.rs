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
    try_list_segments(fs, live).unwrap_or_default()
}

/// The sealed segments of the log whose live file is `live`, in order, or
/// the error listing its directory gave (a directory that does not exist
/// holds no segments). Writers and readers use this one: a listing that
/// failed must not pass for a log without segments.
pub fn try_list_segments(fs: &dyn FileSystem, live: &Path) -> std::io::Result<Vec<Segment>> {
    let dir = parent_dir(live);
    let names = match fs.list_dir(&dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut v: Vec<Segment> = names
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
    Ok(v)
}

/// Sparse indexes (`.idx`) of the log at `live` whose segment is gone: left
/// by a crash between deleting a segment and deleting its index (or by a
/// version that deleted them in that order).
pub fn orphan_indexes(fs: &dyn FileSystem, live: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = parent_dir(live);
    let names = fs.list_dir(&dir)?;
    Ok(names
        .iter()
        .filter_map(|n| n.strip_suffix(".idx"))
        .filter(|seg| parse_segment_name(live, seg).is_some() && !names.iter().any(|n| n == seg))
        .map(|seg| dir.join(format!("{seg}.idx")))
        .collect())
}

/// The torn-tail side files beside the log at `live`, sorted by name.
///
/// When a writer opens a log whose last record is torn, it cuts the torn
/// bytes off and keeps them in `{live}.torn-{offset}` (`.1`, `.2`, ... when
/// that name is taken): evidence of what a crash left, never read again by
/// hyperlog. They stay until someone removes them; `hyperlog verify` and
/// `hyperlog stats` list them.
pub fn torn_side_files(fs: &dyn FileSystem, live: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = parent_dir(live);
    let Some(name) = live.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.torn-");
    let mut v: Vec<PathBuf> = match fs.list_dir(&dir) {
        Ok(names) => names
            .into_iter()
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .and_then(|rest| rest.split('.').next())
                    .is_some_and(|off| !off.is_empty() && off.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|n| dir.join(n))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    v.sort();
    Ok(v)
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

/// Bytes between sparse index points: one `(lsn, offset)` pair every this
/// many bytes of a segment.
pub const INDEX_STRIDE: u64 = 4096;

const INDEX_MAGIC: &[u8; 8] = b"HLIDX001";

/// Whether a record starting at `offset` gets an index point, the last
/// point being at `last` (the first record always does).
pub(crate) fn index_point_due(last: Option<u64>, offset: u64) -> bool {
    last.is_none_or(|o| offset >= o + INDEX_STRIDE)
}

/// The sparse index file of a segment: `{segment}.idx`.
pub fn index_path(segment: &Path) -> PathBuf {
    PathBuf::from(format!("{}.idx", segment.display()))
}

/// Encodes a sparse index: magic, `(lsn, offset)` pairs (little-endian
/// u64s), CRC-32 of everything before it.
pub fn encode_index(points: &[(u64, u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + points.len() * 16);
    v.extend_from_slice(INDEX_MAGIC);
    for (lsn, off) in points {
        v.extend_from_slice(&lsn.to_le_bytes());
        v.extend_from_slice(&off.to_le_bytes());
    }
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// Decodes a sparse index; `None` when it is damaged (readers then scan).
pub fn decode_index(b: &[u8]) -> Option<Vec<(u64, u64)>> {
    let body = b.get(..b.len().checked_sub(4)?)?;
    let crc = u32::from_le_bytes(b[body.len()..].try_into().ok()?);
    if crc32fast::hash(body) != crc || !body.starts_with(INDEX_MAGIC) || (body.len() - 8) % 16 != 0
    {
        return None;
    }
    Some(
        body[8..]
            .chunks_exact(16)
            .map(|c| {
                let lsn = u64::from_le_bytes(c[..8].try_into().unwrap_or_default());
                let off = u64::from_le_bytes(c[8..].try_into().unwrap_or_default());
                (lsn, off)
            })
            .collect(),
    )
}

/// The offset in `segment` to start reading from to find the first entry
/// at or above `lsn`, from its sparse index (0 without a usable index).
pub fn seek_offset(fs: &dyn FileSystem, segment: &Path, lsn: Lsn) -> u64 {
    let Ok(f) = fs.open_read(&index_path(segment)) else {
        return 0;
    };
    let Ok(len) = f.len() else { return 0 };
    let Ok(buf) = f.read_range(0, len.min(64 << 20) as usize) else {
        return 0;
    };
    let Some(points) = decode_index(&buf) else {
        return 0;
    };
    // The last point strictly below `lsn`: the entry at `lsn` lies after it.
    match points.partition_point(|p| p.0 < lsn.get()) {
        0 => 0,
        i => points[i - 1].1,
    }
}

/// Cuts the preallocated zeros a crash left at the end of sealed segments.
///
/// Rotation trims a sealed segment's zeros on its background thread; a crash
/// before that leaves them for good, and every reader of the segment then
/// scans them. On open, each segment whose last byte is zero is scanned in
/// full, and cut back to its last record only when everything after that
/// record is zeros up to a 4 KiB boundary (the shape preallocation leaves). A
/// segment that ends in anything else (a torn record, damage) is left as it
/// is for `verify` and `repair` to report: this tidies, it never discards a
/// byte that could be data. A segment that cannot be read or cut goes to
/// `on_error` and the others are still tidied. Returns the segments it
/// trimmed, with the length each was cut to.
pub(crate) fn trim_sealed_zeros(
    fs: &dyn FileSystem,
    live: &Path,
    max_record_size: u64,
    on_error: &mut dyn FnMut(crate::Error),
) -> Vec<(PathBuf, u64)> {
    let segments = match try_list_segments(fs, live) {
        Ok(s) => s,
        Err(e) => {
            on_error(crate::Error::io("list the segments of", live, e));
            return Vec::new();
        }
    };
    segments
        .into_iter()
        .filter_map(|seg| match trim_one(fs, &seg.path, max_record_size) {
            Ok(cut) => cut.map(|len| (seg.path, len)),
            Err(e) => {
                on_error(e);
                None
            }
        })
        .collect()
}

/// [`trim_sealed_zeros`] for one segment: the length it was cut to, if cut.
fn trim_one(
    fs: &dyn FileSystem,
    path: &Path,
    max_record_size: u64,
) -> Result<Option<u64>, crate::Error> {
    let file = fs
        .open_read(path)
        .map_err(|e| crate::Error::io("open", path, e))?;
    let len = file.len().map_err(|e| crate::Error::io("stat", path, e))?;
    let mut last = [0u8; 1];
    if len == 0
        || file
            .read_at(&mut last, len - 1)
            .map_err(|e| crate::Error::io("read", path, e))?
            != 1
        || last[0] != 0
    {
        return Ok(None);
    }
    drop(file);
    let sum = crate::reader::scan_log(
        fs,
        path,
        None,
        max_record_size,
        crate::RecoveryMode::TolerateTail,
    )?;
    let Some(data_len) = sum.zero_tail.filter(|_| sum.torn.is_none()) else {
        return Ok(None);
    };
    let (mut f, _) = fs
        .open_append(path, 0o644)
        .map_err(|e| crate::Error::io("open", path, e))?;
    f.truncate(data_len)
        .and_then(|()| f.sync_data())
        .map_err(|e| crate::Error::io("truncate", path, e))?;
    Ok(Some(data_len))
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
    fn index_round_trips_and_rejects_damage() {
        let pts = vec![(10, 0), (20, 4100), (35, 8300)];
        let b = encode_index(&pts);
        assert_eq!(decode_index(&b), Some(pts));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert_eq!(decode_index(&bad), None, "byte {i}");
        }
        assert_eq!(decode_index(&b[..3]), None);
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

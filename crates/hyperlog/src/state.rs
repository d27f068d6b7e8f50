//! Small durable state beside a log: the Raft vote, the last purged log id,
//! the committed id.
//!
//! A [`DurableState`] holds one JSON value in one file, `{dir}/{name}.state`
//! by convention, next to the log it belongs to. [`DurableState::store`]
//! replaces the value **atomically** and returns only once the new value is
//! durable; [`DurableState::open`] reads it back. **A damaged file is
//! reported, never replaced by a default**: `open` fails with
//! [`Error::Corrupt`] naming the path and the byte offset of the damage.
//! [`DurableState::load`] returns `Ok(None)` only when the file does not
//! exist, which is a fresh log, and nothing else.
//!
//! ```
//! # fn main() -> Result<(), hyperlog::Error> {
//! use hyperlog::{fs::StdFs, DurableState};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Vote { term: u64, node: u64, committed: bool }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("vote.state");
//! let mut vote = DurableState::open(StdFs::shared(), &path)?;
//! assert_eq!(vote.load::<Vote>()?, None); // no file yet: a fresh log
//! vote.store(&Vote { term: 3, node: 1, committed: false })?; // durable now
//!
//! let reopened = DurableState::open(StdFs::shared(), &path)?;
//! assert_eq!(reopened.load::<Vote>()?, Some(Vote { term: 3, node: 1, committed: false }));
//! # Ok(()) }
//! ```
//!
//! ## How a value is replaced
//!
//! `store` writes the whole new file under `{path}.tmp` (removing one a
//! crash left behind), `fdatasync`s it, renames it over `{path}` and
//! `fsync`s the directory. A power cut at any step leaves either the old
//! file or the new one, each complete: the rename is the commit point and
//! the directory sync makes it durable before `store` returns. The first
//! `store` creates the file the same way, so it never exists half-written.
//!
//! Why not the two-slot file (one `pwrite` + `fdatasync` into whichever of two
//! fixed slots does not hold the newest generation)? The file-system seam
//! cannot write at a chosen offset: a [`WritableFile`] writes at its write
//! position, which starts at the end of the file and is moved only by
//! [`WritableFile::truncate`], and truncating back to the first slot would
//! discard the second, which holds the newest value. The rename costs a
//! second sync (of the directory) per `store`: nothing for a vote or a purge
//! point, which change rarely, but a committed id stored on every commit
//! would pay it each time. It also buys something: a file is either
//! complete or damaged, so damage is always reported. With two slots a damaged
//! newest slot looks just like a torn, unacknowledged write, and the reader
//! would go back to the older slot silently, which for a vote means a node
//! could vote twice in one term.
//!
//! ## Failures
//!
//! An I/O error in `store` is returned, naming the path and the operation,
//! and **poisons** the state: every later `store` fails with
//! [`Error::Poisoned`] naming the first failure, until the file is opened
//! again. Linux may drop the dirty pages a failed `fdatasync` reported on, so
//! a retried sync could succeed while the data is gone; after a failed rename
//! or directory sync nobody knows which file a power cut would leave. Opening
//! again reads what the disk holds: the last acknowledged value or the one the
//! failed `store` was writing. A value that does not serialize or is longer
//! than [`MAX_VALUE_LEN`] is refused before anything is written and does not
//! poison.
//!
//! One `DurableState` per file: nothing locks it, so the owner (a log's
//! writer, which holds the log's lock) must be the only one storing. It is
//! `Send`, so that writer can keep it on its thread. Its directory must exist
//! and be durable already, as a log's own directory is.
//!
//! ## Format
//!
//! Integers are little-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "HLSTATE\0"
//!      8     4  format version, u32 (1)
//!     12     8  generation, u64: 1 for the first store, +1 for each later one
//!     20     4  length of the payload, u32, at most MAX_VALUE_LEN
//!     24     4  CRC-32 (IEEE) of bytes 0..24 followed by the payload
//!     28   len  payload: the value as JSON
//! ```
//!
//! The file ends exactly at the end of the payload; anything else (a shorter
//! or longer file, a bad magic, an unknown version, a length over the limit, a
//! checksum mismatch) is damage. The encoding and decoding are pure functions
//! in a private `layout` module, apart from the I/O.
//!
//! [`WritableFile`]: crate::fs::WritableFile
//! [`WritableFile::truncate`]: crate::fs::WritableFile::truncate

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::fs::{FileSystem, parent_dir};

/// The longest value a state file holds: 4 KiB of JSON.
///
/// A longer value is refused by [`DurableState::store`] with
/// [`Error::RecordTooLarge`] and nothing is written.
///
/// ```
/// # fn main() -> Result<(), hyperlog::Error> {
/// use hyperlog::{fs::StdFs, state::MAX_VALUE_LEN, DurableState, Error};
/// # let dir = tempfile::tempdir().unwrap();
/// let mut state = DurableState::open(StdFs::shared(), dir.path().join("big.state"))?;
/// let too_long = "x".repeat(MAX_VALUE_LEN);
/// assert!(matches!(state.store(&too_long), Err(Error::RecordTooLarge { .. })));
/// # Ok(()) }
/// ```
pub const MAX_VALUE_LEN: usize = 4096;

/// Unix permissions of a new state file, as a log's default `file_mode`.
const FILE_MODE: u32 = 0o640;

/// One JSON value kept durably in one file, replaced atomically (see the
/// [module docs](self) for the format and the failure rules).
///
/// ```
/// # fn main() -> Result<(), hyperlog::Error> {
/// use hyperlog::{fs::StdFs, DurableState};
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("purged.state");
/// let mut purged = DurableState::open(StdFs::shared(), &path)?;
/// for index in [10u64, 20, 30] {
///     purged.store(&index)?;
/// }
/// assert_eq!(purged.generation(), 3);
/// assert_eq!(DurableState::open(StdFs::shared(), &path)?.load::<u64>()?, Some(30));
/// # Ok(()) }
/// ```
pub struct DurableState {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    /// Where the next value is written before it is renamed over `path`.
    tmp: PathBuf,
    /// The directory holding `path`, synced after each rename.
    dir: PathBuf,
    /// The value the file holds as far as this handle knows: what `open`
    /// read, then what the last successful `store` wrote. `None`: no file.
    current: Option<Current>,
    /// The first failure of a `store`, after which none is attempted.
    poisoned: Option<Arc<Error>>,
}

/// A decoded state file.
#[derive(Clone)]
struct Current {
    generation: u64,
    payload: Vec<u8>,
}

// The writer that owns a state keeps it on its own thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<DurableState>();
};

impl DurableState {
    /// Binds a state to the file at `path` and reads its current value;
    /// creates nothing.
    ///
    /// A missing file is a state with no value ([`load`](Self::load)
    /// returns `Ok(None)`). Errors: [`Error::Corrupt`] when the file exists
    /// but is damaged (truncated, empty, not a state file, a checksum
    /// mismatch), naming the path and the byte offset; [`Error::Io`] when it
    /// cannot be read.
    ///
    /// ```
    /// # fn main() -> Result<(), hyperlog::Error> {
    /// use hyperlog::{fs::StdFs, DurableState, Error};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("vote.state");
    /// std::fs::write(&path, b"not a state file").unwrap();
    /// match DurableState::open(StdFs::shared(), &path) {
    ///     Err(Error::Corrupt { path: p, offset, .. }) => assert_eq!((p, offset), (path, 0)),
    ///     other => panic!("expected Corrupt, got {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn open(fs: Arc<dyn FileSystem>, path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let current = read(&*fs, &path)?;
        Ok(DurableState {
            tmp: PathBuf::from(format!("{}.tmp", path.display())),
            dir: parent_dir(&path),
            fs,
            path,
            current,
            poisoned: None,
        })
    }

    /// The current value: what the file held when it was opened, or the
    /// value of the last successful [`store`](Self::store). Reads nothing
    /// from disk.
    ///
    /// `Ok(None)` only when there is no file and nothing was stored since
    /// (damage was reported by [`open`](Self::open)). [`Error::Decode`] when
    /// the stored JSON does not decode into `T`.
    ///
    /// ```
    /// # fn main() -> Result<(), hyperlog::Error> {
    /// use hyperlog::{fs::StdFs, DurableState};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut committed = DurableState::open(StdFs::shared(), dir.path().join("committed.state"))?;
    /// assert_eq!(committed.load::<(u64, u64)>()?, None);
    /// committed.store(&(2u64, 41u64))?;
    /// assert_eq!(committed.load::<(u64, u64)>()?, Some((2, 41)));
    /// assert!(committed.load::<String>().is_err()); // the JSON is not a string
    /// # Ok(()) }
    /// ```
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        let Some(current) = &self.current else {
            return Ok(None);
        };
        serde_json::from_slice(&current.payload)
            .map(Some)
            .map_err(|e| Error::Decode {
                path: self.path.clone(),
                offset: layout::PAYLOAD_OFFSET as u64,
                reason: e.to_string(),
            })
    }

    /// Replaces the value with `value`, durably: when this returns `Ok`, a
    /// power cut can no longer bring back the previous value.
    ///
    /// Errors: [`Error::Serialize`] or [`Error::RecordTooLarge`] (over
    /// [`MAX_VALUE_LEN`] bytes of JSON) before anything is written, leaving
    /// the state usable; [`Error::Io`] from a write, sync, rename or directory
    /// sync, which poisons the state; [`Error::Poisoned`] once poisoned.
    ///
    /// ```
    /// # fn main() -> Result<(), hyperlog::Error> {
    /// use std::sync::Arc;
    /// use hyperlog::{fs::{Fault, Op, SimFs}, DurableState, Error};
    /// let fs = SimFs::new();
    /// let mut vote = DurableState::open(Arc::new(fs.clone()), "/data/vote.state")?;
    /// vote.store(&1u64)?;
    /// fs.fail(Op::Sync, 2, false, Fault::Errno(5)); // the next fdatasync fails
    /// assert!(matches!(vote.store(&2u64), Err(Error::Io { op: "fdatasync", .. })));
    /// assert!(matches!(vote.store(&3u64), Err(Error::Poisoned { .. })));
    /// assert_eq!(vote.load::<u64>()?, Some(1)); // the last acknowledged value
    /// # Ok(()) }
    /// ```
    pub fn store<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if let Some(first) = &self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
                first: first.clone(),
            });
        }
        let payload = serde_json::to_vec(value).map_err(|e| Error::Serialize {
            target: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        if payload.len() > MAX_VALUE_LEN {
            return Err(Error::RecordTooLarge {
                path: self.path.clone(),
                len: payload.len() as u64,
                max: MAX_VALUE_LEN as u64,
            });
        }
        let generation = self
            .generation()
            .checked_add(1)
            .ok_or_else(|| Error::Corrupt {
                path: self.path.clone(),
                offset: layout::GENERATION_OFFSET as u64,
                reason: "the generation is u64::MAX and cannot advance".to_string(),
            })?;
        let file = layout::encode(generation, &payload);
        if let Err(e) = self.replace(&file) {
            self.poisoned = Some(Arc::new(e.clone()));
            return Err(e);
        }
        self.current = Some(Current {
            generation,
            payload,
        });
        Ok(())
    }

    /// How many times the value was stored, as the file counts: 0 when
    /// there is no file, 1 after the first [`store`](Self::store).
    ///
    /// ```
    /// # fn main() -> Result<(), hyperlog::Error> {
    /// use hyperlog::{fs::StdFs, DurableState};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut state = DurableState::open(StdFs::shared(), dir.path().join("a.state"))?;
    /// assert_eq!(state.generation(), 0);
    /// state.store("first")?;
    /// state.store("second")?;
    /// assert_eq!(state.generation(), 2);
    /// # Ok(()) }
    /// ```
    pub fn generation(&self) -> u64 {
        self.current.as_ref().map_or(0, |c| c.generation)
    }

    /// The file this state is kept in.
    ///
    /// ```
    /// # fn main() -> Result<(), hyperlog::Error> {
    /// use std::path::Path;
    /// use hyperlog::{fs::StdFs, DurableState};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let state = DurableState::open(StdFs::shared(), dir.path().join("vote.state"))?;
    /// assert_eq!(state.path().file_name(), Some("vote.state".as_ref()));
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `file` to the temporary file, syncs it, renames it over the
    /// state file and syncs the directory.
    fn replace(&self, file: &[u8]) -> Result<(), Error> {
        let fs = &*self.fs;
        let tmp = &self.tmp;
        // A `.tmp` is only ever a store that did not finish: never acknowledged.
        if fs.exists(tmp) {
            fs.remove_file(tmp)
                .map_err(|e| Error::io("remove", tmp, e))?;
        }
        let (mut out, created) = fs
            .open_append(tmp, FILE_MODE)
            .map_err(|e| Error::io("create", tmp, e))?;
        if !created {
            out.truncate(0).map_err(|e| Error::io("truncate", tmp, e))?;
        }
        out.write_all(file)
            .map_err(|e| Error::io("write", tmp, e))?;
        out.sync_data()
            .map_err(|e| Error::io("fdatasync", tmp, e))?;
        drop(out);
        fs.rename(tmp, &self.path)
            .map_err(|e| Error::io("rename", tmp, e))?;
        fs.sync_dir(&self.dir)
            .map_err(|e| Error::io("fsync directory", &self.dir, e))
    }
}

impl fmt::Debug for DurableState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableState")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .field(
                "value",
                &self
                    .current
                    .as_ref()
                    .map(|c| String::from_utf8_lossy(&c.payload)),
            )
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Reads and decodes the state file at `path`; `None` when it does not exist.
fn read(fs: &dyn FileSystem, path: &Path) -> Result<Option<Current>, Error> {
    let file = match fs.open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    // One byte past the longest valid file is enough to see it is too long.
    let bytes = file
        .read_range(0, layout::MAX_FILE_LEN + 1)
        .map_err(|e| Error::io("read", path, e))?;
    match layout::decode(&bytes) {
        Ok(record) => Ok(Some(Current {
            generation: record.generation,
            payload: record.payload.to_vec(),
        })),
        Err(damage) => Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: damage.offset,
            reason: damage.reason,
        }),
    }
}

/// The byte layout of a state file, as pure functions (see the module docs).
mod layout {
    use super::MAX_VALUE_LEN;

    pub(super) const MAGIC: &[u8; 8] = b"HLSTATE\0";
    pub(super) const VERSION: u32 = 1;
    const VERSION_OFFSET: usize = 8;
    pub(super) const GENERATION_OFFSET: usize = 12;
    const LEN_OFFSET: usize = 20;
    const CRC_OFFSET: usize = 24;
    pub(super) const PAYLOAD_OFFSET: usize = 28;
    /// The longest valid file.
    pub(super) const MAX_FILE_LEN: usize = PAYLOAD_OFFSET + MAX_VALUE_LEN;

    /// A valid state file.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Record<'a> {
        pub(super) generation: u64,
        pub(super) payload: &'a [u8],
    }

    /// Where a file is damaged and how.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Damage {
        pub(super) offset: u64,
        pub(super) reason: String,
    }

    /// The whole file holding `payload` (at most `MAX_VALUE_LEN` bytes) as
    /// generation `generation`.
    pub(super) fn encode(generation: u64, payload: &[u8]) -> Vec<u8> {
        debug_assert!(payload.len() <= MAX_VALUE_LEN);
        let mut out = Vec::with_capacity(PAYLOAD_OFFSET + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&generation.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let crc = crc(&out, payload);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Decodes a whole file, or says where it is damaged.
    pub(super) fn decode(bytes: &[u8]) -> Result<Record<'_>, Damage> {
        let damage = |offset: usize, reason: String| Damage {
            offset: offset as u64,
            reason,
        };
        // The magic first, so that a short file of something else is named
        // for what it is, not as a truncated state file.
        let magic_len = bytes.len().min(MAGIC.len());
        if bytes[..magic_len] != MAGIC[..magic_len] {
            return Err(damage(
                0,
                "it does not start with the magic of a hyperlog state file".to_string(),
            ));
        }
        if bytes.len() < PAYLOAD_OFFSET {
            return Err(damage(
                bytes.len(),
                format!(
                    "the file is {} bytes long, shorter than the {PAYLOAD_OFFSET}-byte header of a state file",
                    bytes.len()
                ),
            ));
        }
        let version = u32::from_le_bytes(field(bytes, VERSION_OFFSET));
        if version != VERSION {
            return Err(damage(
                VERSION_OFFSET,
                format!("format version {version} is not one this build reads ({VERSION})"),
            ));
        }
        let len = u32::from_le_bytes(field(bytes, LEN_OFFSET)) as usize;
        if len > MAX_VALUE_LEN {
            return Err(damage(
                LEN_OFFSET,
                format!("the length field says {len} bytes, over the limit of {MAX_VALUE_LEN}"),
            ));
        }
        let end = PAYLOAD_OFFSET + len;
        if bytes.len() < end {
            return Err(damage(
                bytes.len(),
                format!(
                    "the payload is cut short: {} of {len} bytes",
                    bytes.len() - PAYLOAD_OFFSET
                ),
            ));
        }
        if bytes.len() > end {
            return Err(damage(
                end,
                format!("unexpected bytes follow the {len}-byte payload"),
            ));
        }
        let stored = u32::from_le_bytes(field(bytes, CRC_OFFSET));
        let payload = &bytes[PAYLOAD_OFFSET..end];
        let computed = crc(&bytes[..CRC_OFFSET], payload);
        if stored != computed {
            return Err(damage(
                GENERATION_OFFSET,
                format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
            ));
        }
        Ok(Record {
            generation: u64::from_le_bytes(field(bytes, GENERATION_OFFSET)),
            payload,
        })
    }

    fn crc(header: &[u8], payload: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(header);
        h.update(payload);
        h.finalize()
    }

    /// The `N` bytes at `at`; the caller has checked the length.
    fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes[at..at + N]);
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;

        fn sample() -> Vec<u8> {
            encode(7, br#"{"term":3,"node":1}"#)
        }

        #[test]
        fn round_trip() {
            let file = sample();
            assert_eq!(file.len(), PAYLOAD_OFFSET + 19);
            assert_eq!(
                decode(&file),
                Ok(Record {
                    generation: 7,
                    payload: br#"{"term":3,"node":1}"#
                })
            );
            let empty = encode(1, b"");
            assert_eq!(decode(&empty).map(|r| r.payload.len()), Ok(0));
            let full = encode(u64::MAX, &[b'x'; MAX_VALUE_LEN]);
            assert_eq!(full.len(), MAX_FILE_LEN);
            assert_eq!(decode(&full).map(|r| r.generation), Ok(u64::MAX));
        }

        #[test]
        fn every_single_byte_corruption_is_damage() {
            let file = sample();
            for at in 0..file.len() {
                for mask in [0x01u8, 0x10, 0x80, 0xff] {
                    let mut bad = file.clone();
                    bad[at] ^= mask;
                    let d = decode(&bad).expect_err("a flipped byte must not decode");
                    assert!(d.offset <= file.len() as u64, "{at}: {d:?}");
                }
            }
        }

        #[test]
        fn every_truncation_is_damage_at_the_cut() {
            let file = sample();
            for len in 0..file.len() {
                let d = decode(&file[..len]).expect_err("a cut file must not decode");
                assert_eq!(d.offset, len as u64, "cut at {len}: {}", d.reason);
            }
        }

        #[test]
        fn trailing_bytes_and_zeros_are_damage() {
            let mut file = sample();
            let end = file.len() as u64;
            file.push(0);
            assert_eq!(decode(&file).map_err(|d| d.offset), Err(end));
            let zeros = vec![0u8; 64];
            assert_eq!(decode(&zeros).map_err(|d| d.offset), Err(0));
        }

        #[test]
        fn damage_names_the_field() {
            let d = decode(b"{\"term\":3}").unwrap_err();
            assert_eq!(d.offset, 0);
            assert!(d.reason.contains("magic"), "{}", d.reason);

            let mut file = sample();
            file[VERSION_OFFSET] = 2;
            let d = decode(&file).unwrap_err();
            assert_eq!(d.offset, VERSION_OFFSET as u64);
            assert!(d.reason.contains("version 2"), "{}", d.reason);

            let mut file = sample();
            file[LEN_OFFSET..CRC_OFFSET].copy_from_slice(&5000u32.to_le_bytes());
            let d = decode(&file).unwrap_err();
            assert_eq!(d.offset, LEN_OFFSET as u64);

            let mut file = sample();
            let last = file.len() - 1;
            file[last] ^= 1;
            let d = decode(&file).unwrap_err();
            assert_eq!(d.offset, GENERATION_OFFSET as u64);
            assert!(d.reason.contains("checksum"), "{}", d.reason);
        }

        proptest! {
            #[test]
            fn any_value_round_trips(generation: u64, payload in proptest::collection::vec(any::<u8>(), 0..=MAX_VALUE_LEN)) {
                let file = encode(generation, &payload);
                prop_assert_eq!(decode(&file), Ok(Record { generation, payload: &payload }));
            }

            #[test]
            fn any_damage_is_reported(
                payload in proptest::collection::vec(any::<u8>(), 0..64),
                at in any::<prop::sample::Index>(),
                mask in 1u8..,
            ) {
                let mut file = encode(42, &payload);
                let i = at.index(file.len());
                file[i] ^= mask;
                prop_assert!(decode(&file).is_err());
            }
        }
    }
}

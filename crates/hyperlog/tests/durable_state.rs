//! Small durable state ([`DurableState`]): round trips, reopening, damage
//! reported rather than defaulted, injected faults, and a power cut at every
//! step of seeded sequences of updates.
//!
//! The power-cut sweep runs each sequence over [`Cutter`], a [`SimFs`]
//! wrapper that takes power-cut images (several seeds, torn sectors on and
//! off) after every operation that changes the file system. Every image must
//! open without error and hold the last acknowledged value, or the value of
//! the `store` that was running when the power went, and nothing else; it
//! must then accept a `store` and read it back.
//!
//! `HYPERLOG_POWER_SEEDS` sets how many sequences the sweep runs (default 60).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hyperlog::fs::{Fault, FileSystem, Op, ReadableFile, SimFs, StdFs, WritableFile};
use hyperlog::state::MAX_VALUE_LEN;
use hyperlog::{DurableState, Error};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Vote {
    term: u64,
    node: u64,
    committed: bool,
    /// Varies the file's length, so images cut across sectors.
    note: String,
}

fn vote(term: u64, note_len: usize) -> Vote {
    Vote {
        term,
        node: term % 5,
        committed: term.is_multiple_of(2),
        note: "n".repeat(note_len),
    }
}

fn sim(fs: &SimFs) -> Arc<dyn FileSystem> {
    Arc::new(fs.clone())
}

const PATH: &str = "/data/vote.state";

#[test]
fn durable_state_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<DurableState>();
}

#[test]
fn round_trip_and_reopen_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vote.state");
    let mut state = DurableState::open(StdFs::shared(), &path).unwrap();
    assert_eq!(state.load::<Vote>().unwrap(), None);
    assert_eq!(state.generation(), 0);
    assert_eq!(state.path(), path);

    let v = vote(3, 10);
    state.store(&v).unwrap();
    assert_eq!(state.load::<Vote>().unwrap(), Some(v.clone()));
    assert_eq!(state.generation(), 1);

    let reopened = DurableState::open(StdFs::shared(), &path).unwrap();
    assert_eq!(reopened.load::<Vote>().unwrap(), Some(v));
    assert_eq!(reopened.generation(), 1);
    // The temporary file does not outlive a store.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("vote.state")]);
}

#[test]
fn many_updates_each_replace_the_value() {
    let fs = SimFs::new();
    let mut state = DurableState::open(sim(&fs), PATH).unwrap();
    for term in 1..=200u64 {
        let v = vote(term, (term as usize * 37) % 900);
        state.store(&v).unwrap();
        assert_eq!(state.generation(), term);
        if term % 17 == 0 {
            // A reopened state continues the generations.
            state = DurableState::open(sim(&fs), PATH).unwrap();
            assert_eq!(state.load::<Vote>().unwrap(), Some(v.clone()));
            assert_eq!(state.generation(), term);
        }
        let after = fs.power_cut(term, true);
        let back = DurableState::open(sim(&after), PATH).unwrap();
        assert_eq!(back.load::<Vote>().unwrap(), Some(v));
    }
    assert_eq!(fs.list(), vec![PathBuf::from(PATH)]);
}

#[test]
fn a_missing_file_is_none_and_open_creates_nothing() {
    let fs = SimFs::new();
    let state = DurableState::open(sim(&fs), PATH).unwrap();
    assert_eq!(state.load::<Vote>().unwrap(), None);
    assert_eq!(state.load::<u64>().unwrap(), None);
    assert!(fs.list().is_empty());
    assert_eq!(fs.calls(Op::Open), 0);

    let dir = tempfile::tempdir().unwrap();
    let state = DurableState::open(StdFs::shared(), dir.path().join("x.state")).unwrap();
    assert_eq!(state.load::<Vote>().unwrap(), None);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A valid state file holding `vote(9, 40)`.
fn valid_file() -> Vec<u8> {
    let fs = SimFs::new();
    DurableState::open(sim(&fs), PATH)
        .unwrap()
        .store(&vote(9, 40))
        .unwrap();
    fs.contents(Path::new(PATH)).unwrap()
}

/// Opening `bytes` must fail with `Corrupt` naming the path, at `offset`
/// when given, and leave the file as it was.
fn assert_corrupt(bytes: &[u8], offset: Option<u64>) {
    let fs = SimFs::new();
    fs.put(Path::new(PATH), bytes);
    let e = match DurableState::open(sim(&fs), PATH) {
        Err(e) => e,
        Ok(s) => panic!("{} bytes: expected Corrupt, opened {s:?}", bytes.len()),
    };
    match &e {
        Error::Corrupt {
            path, offset: at, ..
        } => {
            assert_eq!(path, Path::new(PATH));
            if let Some(o) = offset {
                assert_eq!(*at, o, "{e}");
            }
        }
        other => panic!("{} bytes: expected Corrupt, got {other:?}", bytes.len()),
    }
    assert!(e.to_string().contains(PATH), "{e}");
    assert_eq!(fs.contents(Path::new(PATH)).unwrap(), bytes);
}

#[test]
fn truncated_garbage_and_empty_files_are_errors_not_defaults() {
    let file = valid_file();
    for len in 0..file.len() {
        assert_corrupt(&file[..len], Some(len as u64));
    }
    assert_corrupt(b"", Some(0));
    assert_corrupt(b"{\"term\":3}", None);
    assert_corrupt(&[0u8; 4096], Some(0));
    assert_corrupt(&[0xa5u8; 100_000], Some(0));
    let mut longer = file.clone();
    longer.extend_from_slice(b"\n");
    assert_corrupt(&longer, Some(file.len() as u64));
    for at in 0..file.len() {
        let mut flipped = file.clone();
        flipped[at] ^= 0x04;
        assert_corrupt(&flipped, None);
    }
}

#[test]
fn damage_on_disk_names_the_path_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("purged.state");
    DurableState::open(StdFs::shared(), &path)
        .unwrap()
        .store(&(7u64, 120u64))
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let e = DurableState::open(StdFs::shared(), &path).unwrap_err();
    assert!(matches!(&e, Error::Corrupt { path: p, offset: 12, .. } if *p == path));
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("checksum"));

    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = DurableState::open(StdFs::shared(), &path).unwrap_err();
    assert_eq!(e.offset(), Some(bytes.len() as u64 / 2));
}

#[test]
fn a_value_of_another_type_is_a_decode_error() {
    let fs = SimFs::new();
    let mut state = DurableState::open(sim(&fs), PATH).unwrap();
    state.store("a string").unwrap();
    let e = state.load::<Vote>().unwrap_err();
    assert!(matches!(&e, Error::Decode { path, .. } if path == Path::new(PATH)));
    let e = DurableState::open(sim(&fs), PATH)
        .unwrap()
        .load::<u64>()
        .unwrap_err();
    assert!(e.to_string().contains(PATH), "{e}");
}

#[test]
fn a_value_over_the_limit_is_refused_and_nothing_is_written() {
    let fs = SimFs::new();
    let mut state = DurableState::open(sim(&fs), PATH).unwrap();
    state.store(&1u64).unwrap();
    // A JSON string carries two quotes: MAX_VALUE_LEN - 2 characters fit.
    state.store(&"x".repeat(MAX_VALUE_LEN - 2)).unwrap();
    let before = fs.contents(Path::new(PATH));
    let syncs = fs.calls(Op::Sync);
    let e = state.store(&"x".repeat(MAX_VALUE_LEN - 1)).unwrap_err();
    match &e {
        Error::RecordTooLarge { path, len, max } => {
            assert_eq!(path, Path::new(PATH));
            assert_eq!(
                (*len, *max),
                (MAX_VALUE_LEN as u64 + 1, MAX_VALUE_LEN as u64)
            );
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert!(e.to_string().contains(PATH));
    assert_eq!(fs.contents(Path::new(PATH)), before);
    assert_eq!(fs.calls(Op::Sync), syncs);
    assert_eq!(
        state.load::<String>().unwrap().map(|s| s.len()),
        Some(MAX_VALUE_LEN - 2)
    );
    // Not poisoned: a small value still goes through.
    state.store(&2u64).unwrap();
    assert_eq!(
        DurableState::open(sim(&fs), PATH)
            .unwrap()
            .load::<u64>()
            .unwrap(),
        Some(2)
    );
}

#[test]
fn a_leftover_temporary_file_is_ignored_then_replaced() {
    let fs = SimFs::new();
    let tmp = PathBuf::from(format!("{PATH}.tmp"));
    fs.put(&tmp, b"half a store from before a crash");
    let mut state = DurableState::open(sim(&fs), PATH).unwrap();
    assert_eq!(state.load::<u64>().unwrap(), None);
    state.store(&5u64).unwrap();
    assert_eq!(fs.list(), vec![PathBuf::from(PATH)]);
    let state = DurableState::open(sim(&fs.power_cut(1, true)), PATH).unwrap();
    assert_eq!(state.load::<u64>().unwrap(), Some(5));
}

/// A failure at the second call of `op` (the second store) is returned,
/// poisons the state, and leaves the first value or the second on disk.
#[test]
fn an_io_failure_is_returned_and_poisons() {
    let faults = [
        (Op::Open, Fault::Errno(24), "create", false),
        (Op::Write, Fault::Errno(28), "write", false),
        (Op::Write, Fault::ShortWrite(0), "write", false),
        (Op::Sync, Fault::Errno(5), "fdatasync", false),
        (Op::Rename, Fault::Errno(5), "rename", false),
        (Op::SyncDir, Fault::Errno(5), "fsync directory", true),
    ];
    for (op, fault, name, replaced) in faults {
        let fs = SimFs::new();
        let mut state = DurableState::open(sim(&fs), PATH).unwrap();
        state.store(&1u64).unwrap();
        fs.fail(op, 2, true, fault);
        let e = state.store(&2u64).unwrap_err();
        match &e {
            Error::Io { op: o, path, .. } => {
                assert_eq!(*o, name, "{op:?}: {e}");
                assert!(path.starts_with("/data"), "{op:?}: {e}");
            }
            other => panic!("{op:?}: expected Io, got {other:?}"),
        }
        fs.heal();
        let p = state.store(&3u64).unwrap_err();
        match &p {
            Error::Poisoned { path, first } => {
                assert_eq!(path, Path::new(PATH));
                assert_eq!(first.to_string(), e.to_string());
            }
            other => panic!("{op:?}: expected Poisoned, got {other:?}"),
        }
        // The handle goes on answering with the last acknowledged value.
        assert_eq!(state.load::<u64>().unwrap(), Some(1));
        // Reopening reads what the disk holds, and stores again.
        let expect = if replaced { 2 } else { 1 };
        let mut reopened = DurableState::open(sim(&fs), PATH).unwrap();
        assert_eq!(reopened.load::<u64>().unwrap(), Some(expect), "{op:?}");
        reopened.store(&4u64).unwrap();
        let after = DurableState::open(sim(&fs.power_cut(3, true)), PATH).unwrap();
        assert_eq!(after.load::<u64>().unwrap(), Some(4), "{op:?}");
    }
}

// ---------------------------------------------------------------------------
// The power-cut sweep.

/// What a power cut at this point may leave.
#[derive(Clone, Debug)]
struct Expect {
    acked: Option<Vote>,
    in_flight: Option<Vote>,
}

#[derive(Debug)]
struct Cuts {
    expect: Expect,
    images: Vec<(SimFs, Expect)>,
    seed: u64,
}

/// A [`SimFs`] that records power-cut images after each operation that
/// changes it.
#[derive(Debug, Clone)]
struct Cutter {
    sim: SimFs,
    cuts: Arc<Mutex<Cuts>>,
}

const IMAGES_PER_CUT: u64 = 4;

impl Cutter {
    /// Takes the first images at once: a cut before anything happens.
    fn new(sim: SimFs, seed: u64, acked: Option<Vote>) -> Self {
        let c = Cutter {
            sim,
            cuts: Arc::new(Mutex::new(Cuts {
                expect: Expect {
                    acked,
                    in_flight: None,
                },
                images: Vec::new(),
                seed,
            })),
        };
        c.cut();
        c
    }

    fn lock(&self) -> MutexGuard<'_, Cuts> {
        self.cuts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cut(&self) {
        let mut c = self.lock();
        for _ in 0..IMAGES_PER_CUT {
            c.seed = c.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let image = self.sim.power_cut(c.seed, !c.seed.is_multiple_of(3));
            let expect = c.expect.clone();
            c.images.push((image, expect));
        }
    }

    fn after<T>(&self, r: io::Result<T>) -> io::Result<T> {
        self.cut();
        r
    }
}

struct CutFile {
    inner: Box<dyn WritableFile>,
    fs: Cutter,
}

impl WritableFile for CutFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.fs.after(r)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let r = self.inner.sync_data();
        self.fs.after(r)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let r = self.inner.truncate(len);
        self.fs.after(r)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }
}

impl FileSystem for Cutter {
    fn open_append(&self, path: &Path, mode: u32) -> io::Result<(Box<dyn WritableFile>, bool)> {
        let r = self.sim.open_append(path, mode).map(|(inner, created)| {
            let file: Box<dyn WritableFile> = Box::new(CutFile {
                inner,
                fs: self.clone(),
            });
            (file, created)
        });
        self.after(r)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        self.sim.open_read(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.sim.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let r = self.sim.sync_dir(path);
        self.after(r)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let r = self.sim.rename(from, to);
        self.after(r)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let r = self.sim.remove_file(path);
        self.after(r)
    }
    fn exists(&self, path: &Path) -> bool {
        self.sim.exists(path)
    }
    fn write_new(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        let r = self.sim.write_new(path, data, mode);
        self.after(r)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.sim.list_dir(dir)
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn power_seeds() -> u64 {
    std::env::var("HYPERLOG_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// Counts of what the images held, across the sweep.
#[derive(Default, Debug)]
struct Seen {
    images: usize,
    none: usize,
    acked: usize,
    in_flight: usize,
}

fn one_sequence(seed: u64, seen: &mut Seen) {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let sim_fs = SimFs::new();
    let path = Path::new(PATH);
    let mut term = rng.next() % 1000;
    // Half the sequences start from a value already on disk.
    let mut acked = None;
    if rng.next().is_multiple_of(2) {
        let v = vote(term, (rng.next() % 700) as usize);
        DurableState::open(sim(&sim_fs), PATH)
            .unwrap()
            .store(&v)
            .unwrap();
        acked = Some(v);
    }
    let cutter = Cutter::new(sim_fs, seed, acked.clone());
    let mut state = DurableState::open(Arc::new(cutter.clone()), path).unwrap();
    assert_eq!(state.load::<Vote>().unwrap(), acked);
    let updates = 1 + rng.next() % 10;
    for _ in 0..updates {
        term += 1 + rng.next() % 3;
        // Up to ~3 KB: files from a few bytes to several sectors.
        let v = vote(term, (rng.next() % 3000) as usize);
        cutter.lock().expect.in_flight = Some(v.clone());
        state.store(&v).unwrap();
        let mut c = cutter.lock();
        c.expect = Expect {
            acked: Some(v),
            in_flight: None,
        };
    }
    // A cut after the last store returned.
    cutter.cut();
    let images = std::mem::take(&mut cutter.lock().images);
    assert!(images.len() as u64 >= IMAGES_PER_CUT * (1 + 4 * updates));
    for (i, (image, expect)) in images.into_iter().enumerate() {
        let ctx = format!("seed {seed}, image {i}, expecting {expect:?}");
        let state = DurableState::open(sim(&image), path)
            .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
        let got = state
            .load::<Vote>()
            .unwrap_or_else(|e| panic!("{ctx}: load failed: {e}"));
        seen.images += 1;
        if got.is_none() {
            seen.none += 1;
        }
        if got == expect.acked {
            seen.acked += 1;
        } else if expect.in_flight.is_some() && got == expect.in_flight {
            seen.in_flight += 1;
        } else {
            panic!("{ctx}: found {got:?}");
        }
        // The image takes a store and keeps it across another cut.
        let mut state = state;
        let next = vote(term + 100, 5);
        state
            .store(&next)
            .unwrap_or_else(|e| panic!("{ctx}: store after the cut failed: {e}"));
        let again = image.power_cut(seed ^ i as u64, true);
        let back = DurableState::open(sim(&again), path)
            .and_then(|s| s.load::<Vote>())
            .unwrap_or_else(|e| panic!("{ctx}: reopen after the store failed: {e}"));
        assert_eq!(back, Some(next), "{ctx}");
        assert_eq!(image.list(), vec![PathBuf::from(PATH)], "{ctx}");
    }
}

#[test]
fn a_power_cut_at_every_step_leaves_the_acknowledged_value_or_the_newer_one() {
    let mut seen = Seen::default();
    for seed in 0..power_seeds() {
        one_sequence(seed, &mut seen);
    }
    // The sweep did see both outcomes: cuts before and after a store's rename.
    assert!(
        seen.in_flight > 0 && seen.acked > seen.in_flight && seen.none > 0,
        "{seen:?}"
    );
}

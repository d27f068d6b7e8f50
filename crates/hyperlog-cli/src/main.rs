//! `hyperlog`: the command-line tool for hyperlog logs and write-ahead logs.
//!
//! Reads, follows, verifies, repairs, summarizes and converts the files
//! hyperlog (and its Python reference) writes, JSON lines or binary records,
//! plain or segmented; `hyperlog demo` shows the library at work.
//!
//! Exit status: 0 success (and a clean log for `verify`), 1 a log that ends
//! in a torn tail (`verify`), 2 corruption in the middle of a log (or a
//! refused repair), 3 an I/O or usage error (a file that is not a log, or not
//! of the `--format` asked for, included).
//!
//! Zstd archives of rotated logs are read (decompressed as they are read)
//! and never modified.

#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

mod cat;
mod convert;
mod demo;
mod demo_raft;
mod repair;
mod stats;
mod util;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use util::Fail;

/// Read, follow, verify, repair and convert hyperlog logs and WALs.
#[derive(Debug, Parser)]
#[command(
    name = "hyperlog",
    version,
    about,
    after_help = "Examples:\n  hyperlog demo\n  hyperlog cat data/node.wal --output table --explain-lsn\n  hyperlog verify data/node.wal --json\n\nExit status: 0 ok/clean, 1 torn tail, 2 corruption in the middle, 3 I/O or usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How damaged records are treated while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Recovery {
    /// A damaged last record ends the log; damage in the middle is an error.
    Tolerate,
    /// Any damage is an error.
    Strict,
    /// Skip damaged ranges and go on with the next intact record.
    Skip,
}

impl Recovery {
    /// The library's mode.
    pub fn mode(self) -> hyperlog::RecoveryMode {
        match self {
            Recovery::Tolerate => hyperlog::RecoveryMode::TolerateTail,
            Recovery::Strict => hyperlog::RecoveryMode::AbsoluteConsistency,
            Recovery::Skip => hyperlog::RecoveryMode::SkipCorrupted,
        }
    }
}

/// How entries are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Rendered with `--template`.
    Text,
    /// One JSON Log per line, as stored.
    Json,
    /// Aligned columns: offset, lsn, timestamp, level, message.
    Table,
}

/// How to print entries (shared by `cat` and `tail`).
#[derive(Debug, Clone, Args)]
pub struct DisplayArgs {
    /// Output form.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The template for `--output text`: `{name}` placeholders over the Log
    /// metadata (timestamp, filename, function_name, line_number, thread_id,
    /// lsn) and the entry's top-level fields (message, level, tags, ...).
    #[arg(long, short = 't', default_value = hyperlog::template::DEFAULT_TEMPLATE)]
    pub template: String,
    /// Add each LSN's time (ISO UTC), instance id and sequence.
    #[arg(long)]
    pub explain_lsn: bool,
    /// What to do with damaged records.
    #[arg(long, value_enum, default_value_t = Recovery::Tolerate)]
    pub recovery: Recovery,
    /// Read the log as this format (json or binary) instead of detecting
    /// it; a log of the other format is an error.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<hyperlog::LogFormat>,
}

/// Which entries to print.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Start at this byte offset (the start of a record; of the first file
    /// of a segmented log).
    #[arg(long, default_value_t = 0)]
    pub from_offset: u64,
    /// Only entries whose LSN is at or above this one. A segmented WAL is
    /// read from the segment holding it, at the point its sparse index gives,
    /// so damage entirely below this LSN is never read (unless
    /// `--from-offset` is given too: then reading starts there).
    #[arg(long)]
    pub from_lsn: Option<u64>,
    /// Only entries at this level or above (trace, debug, info, warn, error,
    /// critical, fatal).
    #[arg(long, value_parser = parse_level)]
    pub level: Option<hyperlog::LogLevel>,
    /// Only entries whose message, or whose whole JSON, contains this text.
    #[arg(long)]
    pub grep: Option<String>,
    /// Stop after this many entries.
    #[arg(long)]
    pub limit: Option<usize>,
}

fn parse_level(s: &str) -> Result<hyperlog::LogLevel, String> {
    s.parse().map_err(|e: hyperlog::Error| e.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the entries of a log (or of a zstd archive of one).
    #[command(
        after_help = "Examples:\n  hyperlog cat logs/app.log.json\n  hyperlog cat logs/app.log_1767225600_archived.zst\n  hyperlog cat data/node.wal --output table --level warn --grep job --limit 20\n  hyperlog cat data/node.wal --template '{lsn} {level} {message}' --explain-lsn"
    )]
    Cat {
        /// The log (for a segmented WAL, its live file: the sealed segments
        /// beside it are read first), or a zstd archive (recognized by its
        /// first bytes, decompressed as it is read; offsets count
        /// decompressed bytes).
        path: PathBuf,
        #[command(flatten)]
        display: DisplayArgs,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Print the entries of a log as JSON lines (`cat --output json`).
    #[command(
        after_help = "Example:\n  hyperlog dump data/node.wal --from-lsn 7531014860063113216 | jq .entry"
    )]
    Dump {
        /// The log, or a zstd archive of one.
        path: PathBuf,
        /// Add each LSN's time, instance id and sequence as extra fields.
        #[arg(long)]
        explain_lsn: bool,
        /// What to do with damaged records.
        #[arg(long, value_enum, default_value_t = Recovery::Tolerate)]
        recovery: Recovery,
        /// Read the log as this format (json or binary) instead of
        /// detecting it; a log of the other format is an error.
        #[arg(long, value_parser = parse_format)]
        format: Option<hyperlog::LogFormat>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Print the last entries of a log, and with -f follow it.
    #[command(
        after_help = "Examples:\n  hyperlog tail logs/app.log.json -n 20\n  hyperlog tail -f data/node.wal --output table   # follows rotation too; Ctrl-C stops"
    )]
    Tail {
        /// The log.
        path: PathBuf,
        /// How many entries to print.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing entries as they are appended, also across rotation
        /// (the file replaced or truncated), polling every 200 ms. A
        /// write-ahead log (segments, or LSNs) is followed through every
        /// segment sealed meanwhile, each entry once. It shows entries once
        /// *written*: whether one is durable yet is known only inside the
        /// writing process (`Context::follow` there).
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        display: DisplayArgs,
    },
    /// Check every record of a log.
    #[command(
        after_help = "Examples:\n  hyperlog verify data/node.wal\n  hyperlog verify data/node.wal --json | jq .damage\n\nExit status: 0 clean, 1 only a torn tail, 2 corruption in the middle, 3 I/O or usage error."
    )]
    Verify {
        /// The log, or a zstd archive of one (reported as an archive, its
        /// damage at offsets of the decompressed stream).
        path: PathBuf,
        /// Print one JSON object instead of a report.
        #[arg(long)]
        json: bool,
    },
    /// Cut a torn tail, or salvage the intact records of a damaged log.
    ///
    /// Never destroys: cut bytes are kept in `{file}.torn-{offset}`. It
    /// refuses zstd archives (nothing to repair: read them with `cat`),
    /// files that do not look like a log, and sealed segments of a WAL that
    /// end torn (damage to acknowledged data) unless --force; damage in
    /// the middle is left to --salvage. A refusal changes nothing at all.
    #[command(
        after_help = "Examples:\n  hyperlog repair data/node.wal --dry-run\n  hyperlog repair data/node.wal\n  hyperlog repair data/node.wal --salvage --output data/node.fixed.wal"
    )]
    Repair {
        /// The log (for a segmented WAL, its live file: the sealed segments
        /// beside it are checked too).
        path: PathBuf,
        /// Say what would be done and stop.
        #[arg(long)]
        dry_run: bool,
        /// Copy every intact record into a new file instead (the original is
        /// never modified).
        #[arg(long)]
        salvage: bool,
        /// Where --salvage writes (default `{path}.salvaged`).
        #[arg(long, short = 'o', requires = "salvage")]
        output: Option<PathBuf>,
        /// With --salvage: overwrite its output if it exists. Without: also
        /// cut a file that does not look like a log (all of it) and the torn
        /// tail of a sealed segment, keeping the bytes in a side file.
        #[arg(long)]
        force: bool,
    },
    /// Summarize a log (or a zstd archive of one): levels, rate over time,
    /// record sizes.
    #[command(after_help = "Example:\n  hyperlog stats logs/app.log.json")]
    Stats {
        /// The log, or a zstd archive of one.
        path: PathBuf,
        /// What to do with damaged records.
        #[arg(long, value_enum, default_value_t = Recovery::Tolerate)]
        recovery: Recovery,
        /// Read the log as this format (json or binary) instead of
        /// detecting it; a log of the other format is an error.
        #[arg(long, value_parser = parse_format)]
        format: Option<hyperlog::LogFormat>,
    },
    /// Convert a log between JSON lines and binary records, keeping LSNs.
    #[command(
        after_help = "Examples:\n  hyperlog convert data/node.wal node.log.json --to json\n  hyperlog convert node.log.json data/node.wal --to binary --force"
    )]
    Convert {
        /// The log to read.
        input: PathBuf,
        /// The file to write.
        output: PathBuf,
        /// The format to write.
        #[arg(long, value_parser = parse_format)]
        to: hyperlog::LogFormat,
        /// Overwrite OUTPUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Show hyperlog at work: throughput, then a writer killed with SIGKILL
    /// and recovered.
    #[command(
        after_help = "Examples:\n  hyperlog demo\n  hyperlog demo --seconds 10 --dir /tmp/hyperlog-demo"
    )]
    Demo {
        /// How long the throughput phase runs.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Where the demo writes its logs (default: a new directory in the
        /// temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Internal: run as the child writer of the crash demo.
        #[arg(long, hide = true, value_name = "DIR")]
        child_writer: Option<PathBuf>,
        /// Internal: run as node ID of the replicated demo (with --raft-addr
        /// and --dir).
        #[arg(long, hide = true, value_name = "ID", requires = "raft_addr")]
        raft_node: Option<u64>,
        /// Internal: the replicated demo node's address.
        #[arg(long, hide = true, value_name = "ADDR")]
        raft_addr: Option<String>,
    },
}

fn parse_format(s: &str) -> Result<hyperlog::LogFormat, String> {
    s.parse()
}

fn run(cli: Cli) -> Result<u8, Fail> {
    match cli.command {
        Command::Cat {
            path,
            display,
            filter,
        } => cat::cat(&path, &display, &filter),
        Command::Dump {
            path,
            explain_lsn,
            recovery,
            format,
            filter,
        } => {
            let display = DisplayArgs {
                output: Output::Json,
                template: hyperlog::template::DEFAULT_TEMPLATE.into(),
                explain_lsn,
                recovery,
                format,
            };
            cat::cat(&path, &display, &filter)
        }
        Command::Tail {
            path,
            lines,
            follow,
            display,
        } => cat::tail(&path, lines, follow, &display),
        Command::Verify { path, json } => verify::verify(&path, json),
        Command::Repair {
            path,
            dry_run,
            salvage,
            output,
            force,
        } => {
            if salvage {
                repair::salvage(&path, output, dry_run, force)
            } else {
                repair::cut_tail(&path, dry_run, force)
            }
        }
        Command::Stats {
            path,
            recovery,
            format,
        } => stats::stats(&path, recovery, format),
        Command::Convert {
            input,
            output,
            to,
            force,
        } => convert::convert(&input, &output, to, force),
        Command::Demo {
            seconds,
            dir,
            child_writer,
            raft_node,
            raft_addr,
        } => match (child_writer, raft_node, raft_addr, dir) {
            (Some(d), ..) => demo::child_writer(&d),
            (None, Some(id), Some(addr), Some(dir)) => demo_raft::node(id, &addr, &dir),
            (None, Some(_), _, _) => Err(Fail::io("--raft-node needs --raft-addr and --dir")),
            (None, None, _, dir) => demo::demo(seconds, dir),
        },
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 3 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if !f.msg.is_empty() {
                let style = anstyle::Style::new()
                    .bold()
                    .fg_color(Some(anstyle::AnsiColor::Red.into()));
                anstream::eprintln!("{style}error:{style:#} {}", f.msg);
            }
            ExitCode::from(f.code)
        }
    }
}

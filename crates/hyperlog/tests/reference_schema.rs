//! Every line hyperlog writes decodes under the Python reference's schema.
//!
//! The strict schema is in `support/reference_schema.rs`: a line that
//! decodes under it is one the reference reads. Every entry point writes here: `log`, `log_blocking`,
//! `log_prepared`, every macro in both forms, both adapters, binary WAL
//! records (whose payload is the same JSON) and `format::encode_log`, which
//! `hyperlog convert` uses.

use std::path::Path;

use futures::executor::block_on;
use hyperlog::format::encode_log;
use hyperlog::{
    ContextOptions, DurabilityMode, Entry, Log, LogFormat, LogLevel, Logger, Message, ReadOptions,
};

#[path = "support/reference_schema.rs"]
mod reference_schema;
use reference_schema::{RefEntry, RefEntrySubclass, RefLevel, RefLog, strict};

fn json_lines(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read(path).unwrap();
    assert!(text.ends_with(b"\n"), "{} ends mid-line", path.display());
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct JobCreated {
    level: LogLevel,
    message: Option<String>,
    job_id: u64,
}
impl Entry for JobCreated {
    fn level(&self) -> LogLevel {
        self.level
    }
}

/// The name `__function_name!` gives this file's test functions.
const HERE: &str = "reference_schema::";

#[test]
fn every_entry_point_writes_lines_the_reference_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log.json");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "app",
            ContextOptions::new()
                .path(&path)
                .level(LogLevel::Trace)
                .model("job", |text: &str| JobCreated {
                    level: LogLevel::Warn,
                    message: Some(text.to_string()),
                    job_id: 9,
                }),
        )
        .unwrap();

    // (message, expected function_name) for each line, in order.
    let mut want: Vec<(&str, String)> = Vec::new();
    let here = |f: &str| format!("{HERE}{f}");

    block_on(ctx.log(Message::info("log"))).unwrap();
    want.push(("log", String::new()));
    ctx.log_blocking(Message::warn("log_blocking")).unwrap();
    want.push(("log_blocking", String::new()));
    block_on(ctx.log_prepared("log_prepared", "default")).unwrap();
    want.push(("log_prepared", String::new()));
    block_on(ctx.log(JobCreated {
        level: LogLevel::Error,
        message: None,
        job_id: 1,
    }))
    .unwrap();
    want.push(("", String::new()));

    let f = "every_entry_point_writes_lines_the_reference_reads";
    block_on(hyperlog::log!(ctx, LogLevel::Info, "log! {}", 1)).unwrap();
    want.push(("log! 1", here(f)));
    block_on(hyperlog::trace!(ctx, "trace!")).unwrap();
    want.push(("trace!", here(f)));
    block_on(hyperlog::debug!(ctx, "debug!")).unwrap();
    want.push(("debug!", here(f)));
    block_on(hyperlog::info!(ctx, "info!")).unwrap();
    want.push(("info!", here(f)));
    block_on(hyperlog::warn!(ctx, "warn!")).unwrap();
    want.push(("warn!", here(f)));
    block_on(hyperlog::error!(ctx, "error!")).unwrap();
    want.push(("error!", here(f)));
    block_on(hyperlog::critical!(ctx, "critical!")).unwrap();
    want.push(("critical!", here(f)));
    block_on(hyperlog::fatal!(ctx, "fatal!")).unwrap();
    want.push(("fatal!", here(f)));
    hyperlog::log!(blocking: ctx, LogLevel::Warn, "blocking log!").unwrap();
    want.push(("blocking log!", here(f)));
    hyperlog::trace!(blocking: ctx, "blocking trace!").unwrap();
    want.push(("blocking trace!", here(f)));
    hyperlog::debug!(blocking: ctx, "blocking debug!").unwrap();
    want.push(("blocking debug!", here(f)));
    hyperlog::info!(blocking: ctx, "blocking info!").unwrap();
    want.push(("blocking info!", here(f)));
    hyperlog::warn!(blocking: ctx, "blocking warn!").unwrap();
    want.push(("blocking warn!", here(f)));
    hyperlog::error!(blocking: ctx, "blocking error!").unwrap();
    want.push(("blocking error!", here(f)));
    hyperlog::critical!(blocking: ctx, "blocking critical!").unwrap();
    want.push(("blocking critical!", here(f)));
    hyperlog::fatal!(blocking: ctx, "blocking fatal!").unwrap();
    want.push(("blocking fatal!", here(f)));
    // Inside a closure: the enclosing function's path, without `{{closure}}`.
    let in_closure = || hyperlog::info!(blocking: ctx, "in a closure");
    in_closure().unwrap();
    want.push(("in a closure", here(f)));

    #[cfg(feature = "tracing")]
    {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber =
            tracing_subscriber::registry().with(hyperlog::HyperlogLayer::new(ctx.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("job", job_id = 7);
            let _g = span.enter();
            tracing::warn!(attempt = 2, "tracing event");
        });
        want.push(("tracing event", module_path!().to_string()));
    }
    #[cfg(feature = "log")]
    {
        let adapter = hyperlog::HyperlogLogger::new(ctx.clone());
        log::Log::log(
            &adapter,
            &log::Record::builder()
                .args(format_args!("log record"))
                .level(log::Level::Error)
                .target("app::cache")
                .module_path_static(Some("app::cache"))
                .file_static(Some("src/cache.rs"))
                .line(Some(12))
                .build(),
        );
        want.push(("log record", "app::cache".to_string()));
        // A record without a module path still writes a string.
        log::Log::log(
            &adapter,
            &log::Record::builder()
                .args(format_args!("bare log record"))
                .level(log::Level::Info)
                .build(),
        );
        want.push(("bare log record", String::new()));
    }
    ctx.close_blocking().unwrap();

    let lines = json_lines(&path);
    assert_eq!(lines.len(), want.len(), "one line per call");
    for (line, (message, function)) in lines.iter().zip(&want) {
        let log: RefLog<RefEntrySubclass> = strict(line);
        assert_eq!(log.entry.message.as_deref().unwrap_or(""), *message);
        assert_eq!(
            &log.function_name,
            function,
            "{}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(log.lsn, None);
        assert!(log.thread_id > 0);
        // Call sites the library can see name this file and a real line.
        if !message.contains("log record") {
            assert!(
                log.filename.ends_with("reference_schema.rs"),
                "{}",
                log.filename
            );
            assert!(log.line_number > 0);
        }
        // Lines of `Message` are exactly the reference's base entry.
        if !message.is_empty() && !message.contains("tracing") && !message.contains("log record") {
            let _: RefLog<RefEntry> = strict(line);
        }
    }
}

#[test]
fn wal_records_and_their_conversion_to_json_decode_too() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("node.wal");
    let logger = Logger::new();
    let ctx = logger
        .context_with_blocking(
            "wal",
            ContextOptions::new()
                .path(&wal)
                .durability(DurabilityMode::FsyncBatch)
                .format(LogFormat::Binary)
                .enable_lsn(true)
                .instance_id(3),
        )
        .unwrap();
    let mut lsns = Vec::new();
    for i in 0..20u64 {
        lsns.push(
            ctx.log_blocking(JobCreated {
                level: LogLevel::Info,
                message: (i % 2 == 0).then(|| format!("job {i}")),
                job_id: i,
            })
            .unwrap()
            .unwrap()
            .get(),
        );
    }
    hyperlog::info!(blocking: ctx, "a message in a WAL").unwrap();
    ctx.close_blocking().unwrap();

    // The payload of every binary record is a line the reference reads.
    let mut payload_lsns = Vec::new();
    for rec in hyperlog::read_records(&wal, 0, ReadOptions::default()) {
        let rec = rec.unwrap();
        let log: RefLog<RefEntrySubclass> = strict(&rec.payload);
        assert_eq!(log.lsn, rec.lsn.map(|l| l.get()));
        payload_lsns.push(log.lsn.unwrap());
    }
    assert_eq!(&payload_lsns[..20], &lsns[..]);
    assert_eq!(payload_lsns.len(), 21);

    // Converted to JSON lines (what `hyperlog convert --to json` writes).
    let mut out = Vec::new();
    for item in
        hyperlog::read_entries_blocking::<serde_json::Value>(&wal, 0, ReadOptions::default())
    {
        let (_, log, _) = item.unwrap();
        encode_log(LogFormat::Json, &log, &mut out).unwrap();
    }
    let converted: Vec<&[u8]> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(converted.len(), 21);
    for (line, lsn) in converted.iter().zip(&payload_lsns) {
        let log: RefLog<RefEntrySubclass> = strict(line);
        assert_eq!(log.lsn, Some(*lsn));
    }
}

#[test]
fn a_log_missing_its_metadata_is_written_with_strings_and_zeros() {
    // What `convert` meets in a file from another tool: no call site at all.
    let log = Log {
        entry: Message::info("bare"),
        filename: None,
        function_name: None,
        line_number: None,
        thread_id: None,
        timestamp: Some("2026-11-24T10:15:02.123456+00:00".into()),
        lsn: None,
    };
    let mut out = Vec::new();
    encode_log(LogFormat::Json, &log, &mut out).unwrap();
    let back: RefLog<RefEntry> = strict(out.strip_suffix(b"\n").unwrap());
    assert_eq!(back.filename, "");
    assert_eq!(back.function_name, "");
    assert_eq!(back.line_number, 0);
    assert_eq!(back.thread_id, 0);
    assert_eq!(back.entry.level, RefLevel::INFO);
}

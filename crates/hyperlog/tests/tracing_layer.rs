//! The `tracing` layer (feature `tracing`): what an event's entry holds, and
//! above all the spans it is in with their fields (`span`, `spans`), checked
//! on the bytes written and on the entries read back.

#![cfg(feature = "tracing")]

use std::path::{Path, PathBuf};

use hyperlog::{Context, ContextOptions, HyperlogLayer, LogLevel, Logger, Message, ReadOptions};
use serde_json::{Value, json};
use tracing::field::Empty;
use tracing_subscriber::layer::SubscriberExt;

/// A JSON-lines context writing to `name` in `dir`.
fn context(logger: &Logger, dir: &Path, name: &str) -> (Context, PathBuf) {
    let path = dir.join(name);
    let ctx = logger
        .context_with_blocking(name, ContextOptions::new().path(&path))
        .unwrap();
    (ctx, path)
}

/// The entries of the log at `path`, as JSON values.
fn entries(path: &Path) -> Vec<Value> {
    hyperlog::read_values(path, 0, ReadOptions::default())
        .map(|item| item.unwrap().1.entry)
        .collect()
}

/// The lines of the file at `path`.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Nested spans, a field declared `Empty` and recorded later, a field
/// recorded again, and events at every depth: the exact `span` and `spans`
/// written for each.
#[test]
fn nested_spans_are_written_with_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let logger = Logger::new();
    let (ctx, path) = context(&logger, dir.path(), "app.log.json");
    let subscriber = tracing_subscriber::registry().with(HyperlogLayer::new(ctx.clone()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "app", "before any span");
        let job = tracing::info_span!("job", job_id = 7, owner = Empty, state = "new");
        let _job = job.enter();
        tracing::info!(target: "app", "job entered");
        job.record("owner", "ada");
        job.record("state", "running");
        {
            let step = tracing::info_span!("step", n = 2, ok = true);
            let _step = step.enter();
            tracing::warn!(target: "app", attempt = 3, ratio = 0.5, "step slow");
        }
        tracing::error!(target: "app", "job failed");
    });
    ctx.close_blocking().unwrap();

    // The bytes: key order included.
    let lines = lines(&path);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let expected = [
        r#"{"message":"before any span","tags":[],"level":"INFO","target":"app","spans":[]}"#
            .to_string(),
        concat!(
            r#"{"message":"job entered","tags":[],"level":"INFO","target":"app","#,
            r#""span":{"name":"job","job_id":7,"state":"new"},"#,
            r#""spans":[{"name":"job","job_id":7,"state":"new"}]}"#,
        )
        .to_string(),
        concat!(
            r#"{"message":"step slow","tags":[],"level":"WARN","target":"app","#,
            r#""span":{"name":"step","n":2,"ok":true},"#,
            r#""spans":[{"name":"job","job_id":7,"state":"running","owner":"ada"},"#,
            r#"{"name":"step","n":2,"ok":true}],"#,
            r#""attempt":3,"ratio":0.5}"#,
        )
        .to_string(),
        concat!(
            r#"{"message":"job failed","tags":[],"level":"ERROR","target":"app","#,
            r#""span":{"name":"job","job_id":7,"state":"running","owner":"ada"},"#,
            r#""spans":[{"name":"job","job_id":7,"state":"running","owner":"ada"}]}"#,
        )
        .to_string(),
    ];
    for (line, entry) in lines.iter().zip(&expected) {
        assert!(
            line.contains(&format!(r#""entry":{entry}"#)),
            "line {line}\ndoes not hold the entry {entry}"
        );
    }

    // Read back: the same values.
    let entries = entries(&path);
    assert_eq!(entries.len(), 4);
    assert!(entries[0].get("span").is_none());
    assert_eq!(entries[0]["spans"], json!([]));
    let job_then = json!({"name": "job", "job_id": 7, "state": "new"});
    assert_eq!(entries[1]["span"], job_then);
    assert_eq!(entries[1]["spans"], json!([job_then]));
    let job_now = json!({"name": "job", "job_id": 7, "state": "running", "owner": "ada"});
    let step = json!({"name": "step", "n": 2, "ok": true});
    assert_eq!(entries[2]["span"], step);
    assert_eq!(entries[2]["spans"], json!([job_now, step]));
    assert_eq!(entries[2]["attempt"], json!(3));
    assert_eq!(entries[3]["span"], job_now);
    assert_eq!(entries[3]["spans"], json!([job_now]));

    // Every entry still decodes as the base entry (the reference's `Entry`:
    // `message` a string or null, `tags` strings, `level` a level name).
    let levels: Vec<(Option<String>, LogLevel)> =
        hyperlog::read_entries_blocking::<Message>(&path, 0, ReadOptions::default())
            .map(|item| {
                let m = item.unwrap().1.entry;
                assert!(m.tags.is_empty());
                (m.message, m.level)
            })
            .collect();
    assert_eq!(
        levels,
        [
            (Some("before any span".to_string()), LogLevel::Info),
            (Some("job entered".to_string()), LogLevel::Info),
            (Some("step slow".to_string()), LogLevel::Warn),
            (Some("job failed".to_string()), LogLevel::Error),
        ]
    );
}

/// An event's explicit parent decides its spans, not the entered ones; an
/// event with `parent: None` is in no span. A span field named `name`, and
/// event fields named like the entry's own keys, are left out.
#[test]
fn explicit_parents_and_reserved_names() {
    let dir = tempfile::tempdir().unwrap();
    let logger = Logger::new();
    let (ctx, path) = context(&logger, dir.path(), "app.log.json");
    let subscriber = tracing_subscriber::registry().with(HyperlogLayer::new(ctx.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let conn = tracing::info_span!("conn", peer = "10.0.0.1", name = "shadowed");
        let req = tracing::info_span!(parent: &conn, "req", id = 1);
        let other = tracing::info_span!("other", k = "v");
        let _other = other.enter();
        tracing::info!(target: "app", parent: &req, span = "x", spans = 1, level = "loud", extra = 2, "in req");
        tracing::info!(target: "app", parent: None, "detached");
    });
    ctx.close_blocking().unwrap();

    let lines = lines(&path);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains(concat!(
            r#""entry":{"message":"in req","tags":[],"level":"INFO","target":"app","#,
            r#""span":{"name":"req","id":1},"#,
            r#""spans":[{"name":"conn","peer":"10.0.0.1"},{"name":"req","id":1}],"#,
            r#""extra":2}"#,
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(
            r#""entry":{"message":"detached","tags":[],"level":"INFO","target":"app","spans":[]}"#
        ),
        "{}",
        lines[1]
    );
}

/// Two layers on one registry share a span's fields: no double insertion
/// (which would panic), each record applied once in effect, and both
/// contexts write the same `spans`.
#[test]
fn two_layers_on_one_registry() {
    let dir = tempfile::tempdir().unwrap();
    let logger = Logger::new();
    let (a, path_a) = context(&logger, dir.path(), "a.log.json");
    let (b, path_b) = context(&logger, dir.path(), "b.log.json");
    let subscriber = tracing_subscriber::registry()
        .with(HyperlogLayer::new(a.clone()))
        .with(HyperlogLayer::new(b.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let job = tracing::info_span!("job", job_id = 7, owner = Empty);
        let _job = job.enter();
        job.record("owner", "ada");
        job.record("owner", "grace");
        tracing::info!(target: "app", "one");
    });
    logger.close_blocking().unwrap();

    let spans = json!([{"name": "job", "job_id": 7, "owner": "grace"}]);
    for path in [path_a, path_b] {
        let entries = entries(&path);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["spans"], spans);
        assert_eq!(entries[0]["span"], spans[0]);
        assert!(lines(&path)[0].contains(r#""spans":[{"name":"job","job_id":7,"owner":"grace"}]"#));
    }
}

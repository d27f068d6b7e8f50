//! The smallest useful program: a console context, a JSON-lines file, and
//! reading the file back.
//!
//! Run with `cargo run --example quickstart`.

use hyperlog::{ContextOptions, LogLevel, Logger, Message, ReadOptions};

fn main() -> Result<(), hyperlog::Error> {
    let dir = std::env::temp_dir().join(format!("hyperlog-quickstart-{}", std::process::id()));
    let logger = Logger::new();

    // A context without a path prints its template to stdout.
    let console = logger.context_blocking("console")?;
    hyperlog::info!(blocking: console, "writing logs into {}", dir.display())?;

    // A context with a path writes JSON lines, one Log object per line.
    let app = logger.context_with_blocking(
        "app",
        ContextOptions::new()
            .path(dir.join("app.log.json"))
            .level(LogLevel::Debug),
    )?;
    app.log_blocking(Message::info("service started").tag("lifecycle"))?;
    hyperlog::debug!(blocking: app, "{} workers ready", 4)?;
    app.log_blocking(Message::trace("below the context's level: not written"))?;
    logger.close_blocking()?;

    for item in hyperlog::read_entries_blocking::<Message>(
        dir.join("app.log.json"),
        0,
        ReadOptions::default(),
    ) {
        let (offset, log, _lsn) = item?;
        println!(
            "{offset:>4} {} {:<5} {}",
            log.timestamp.unwrap_or_default(),
            log.entry.level,
            log.entry.message.unwrap_or_default()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

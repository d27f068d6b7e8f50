//! Routing the ecosystem's logging calls into a context.
//!
//! - [`HyperlogLayer`] (feature `tracing`): a `tracing_subscriber::Layer`
//!   that logs every event (level, message, fields, the names of the spans
//!   it is in) into a [`Context`].
//! - [`HyperlogLogger`] (feature `log`): a `log::Log` that logs every record
//!   (level, message, target) into a [`Context`].
//!
//! Both log through [`Context::log_blocking_at`], so each call returns when
//! the entry is as durable as the context's mode promises: route hot async
//! paths to a `None` or `Flush` context, and control-plane events to a WAL
//! context. An error has no caller to return to here; it goes to the
//! context's error handler (by default one line on stderr per kind of error).
//!
//! The entry written is an [`EcosystemEvent`]: the base entry's `message`,
//! `tags` and `level`, then `target`, `spans` and the event's own fields.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::{Context, Entry, LogLevel};

/// What an adapter logs: a `tracing` event or a `log` record.
#[derive(Debug, Clone, PartialEq)]
pub struct EcosystemEvent {
    /// The formatted message (`message` field of a tracing event).
    pub message: Option<String>,
    /// The level.
    pub level: LogLevel,
    /// The event's target (module path by default).
    pub target: String,
    /// Names of the spans the event is in, outermost first.
    pub spans: Vec<String>,
    /// The event's other fields, in the order they were recorded.
    pub fields: Vec<(String, serde_json::Value)>,
}

impl Serialize for EcosystemEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5 + self.fields.len()))?;
        m.serialize_entry("message", &self.message)?;
        m.serialize_entry("tags", &[] as &[&str])?;
        m.serialize_entry("level", &self.level)?;
        m.serialize_entry("target", &self.target)?;
        m.serialize_entry("spans", &self.spans)?;
        for (k, v) in &self.fields {
            if !matches!(
                k.as_str(),
                "message" | "tags" | "level" | "target" | "spans"
            ) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

impl Entry for EcosystemEvent {
    fn level(&self) -> LogLevel {
        self.level
    }
}

fn report(ctx: &Context, e: crate::Error) {
    ctx.report_error(&e);
}

#[cfg(feature = "tracing")]
mod tracing_layer {
    use std::fmt;

    use tracing_core::field::{Field, Visit};
    use tracing_core::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context as LayerContext, Layer};
    use tracing_subscriber::registry::LookupSpan;

    use super::{EcosystemEvent, report};
    use crate::{CallSite, Context, LogLevel};

    /// A `tracing_subscriber::Layer` that logs events into a hyperlog
    /// context.
    ///
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    /// let dir = tempfile::tempdir().unwrap();
    /// let logger = hyperlog::Logger::new();
    /// let ctx = logger
    ///     .context_with_blocking("app", hyperlog::ContextOptions::new().path(dir.path().join("app.log.json")))
    ///     .unwrap();
    /// let subscriber = tracing_subscriber::registry().with(hyperlog::HyperlogLayer::new(ctx.clone()));
    /// tracing::subscriber::with_default(subscriber, || {
    ///     let span = tracing::info_span!("job", id = 7);
    ///     let _in = span.enter();
    ///     tracing::info!(attempt = 2, "job started");
    /// });
    /// ctx.close_blocking().unwrap();
    /// let text = std::fs::read_to_string(dir.path().join("app.log.json")).unwrap();
    /// assert!(text.contains(r#""message":"job started""#));
    /// assert!(text.contains(r#""spans":["job"]"#));
    /// assert!(text.contains(r#""attempt":2"#));
    /// ```
    #[derive(Debug, Clone)]
    pub struct HyperlogLayer {
        ctx: Context,
    }

    impl HyperlogLayer {
        /// A layer logging into `ctx`.
        pub fn new(ctx: Context) -> Self {
            HyperlogLayer { ctx }
        }
    }

    /// `tracing` has five levels; hyperlog's CRITICAL and FATAL have no
    /// tracing counterpart.
    pub(crate) fn level(l: &Level) -> LogLevel {
        match *l {
            Level::TRACE => LogLevel::Trace,
            Level::DEBUG => LogLevel::Debug,
            Level::INFO => LogLevel::Info,
            Level::WARN => LogLevel::Warn,
            Level::ERROR => LogLevel::Error,
        }
    }

    #[derive(Default)]
    struct Fields {
        message: Option<String>,
        fields: Vec<(String, serde_json::Value)>,
    }

    impl Fields {
        fn put(&mut self, field: &Field, v: serde_json::Value) {
            if field.name() == "message" {
                self.message = Some(match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                });
            } else {
                self.fields.push((field.name().to_string(), v));
            }
        }
    }

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.put(field, serde_json::Value::String(format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.put(field, value.into());
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.put(field, value.into());
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            self.put(field, value.into());
        }
        fn record_f64(&mut self, field: &Field, value: f64) {
            self.put(field, value.into());
        }
        fn record_bool(&mut self, field: &Field, value: bool) {
            self.put(field, value.into());
        }
    }

    impl<S> Layer<S> for HyperlogLayer
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
            let meta = event.metadata();
            let lvl = level(meta.level());
            if lvl < self.ctx.level() {
                return;
            }
            let mut f = Fields::default();
            event.record(&mut f);
            let spans = ctx
                .event_scope(event)
                .map(|scope| scope.from_root().map(|s| s.name().to_string()).collect())
                .unwrap_or_default();
            let entry = EcosystemEvent {
                message: f.message,
                level: lvl,
                target: meta.target().to_string(),
                spans,
                fields: f.fields,
            };
            let site = CallSite {
                file: meta.file(),
                function: meta.module_path(),
                line: meta.line(),
            };
            if let Err(e) = self.ctx.log_blocking_at(site, entry) {
                report(&self.ctx, e);
            }
        }
    }
}

#[cfg(feature = "tracing")]
pub use tracing_layer::HyperlogLayer;

#[cfg(feature = "log")]
mod log_adapter {
    use super::{EcosystemEvent, report};
    use crate::{CallSite, Context, LogLevel};

    /// A `log::Log` that logs records into a hyperlog context.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let logger = hyperlog::Logger::new();
    /// let ctx = logger
    ///     .context_with_blocking("app", hyperlog::ContextOptions::new().path(dir.path().join("app.log.json")))
    ///     .unwrap();
    /// let adapter = hyperlog::HyperlogLogger::new(ctx.clone());
    /// // In an application: `hyperlog::HyperlogLogger::install(ctx)?` once at start-up.
    /// log::Log::log(&adapter, &log::Record::builder()
    ///     .args(format_args!("cache warmed in {} ms", 12))
    ///     .level(log::Level::Warn)
    ///     .target("app::cache")
    ///     .build());
    /// ctx.close_blocking().unwrap();
    /// let text = std::fs::read_to_string(dir.path().join("app.log.json")).unwrap();
    /// assert!(text.contains(r#""message":"cache warmed in 12 ms","tags":[],"level":"WARN","target":"app::cache""#));
    /// ```
    #[derive(Debug, Clone)]
    pub struct HyperlogLogger {
        ctx: Context,
    }

    impl HyperlogLogger {
        /// An adapter logging into `ctx`.
        pub fn new(ctx: Context) -> Self {
            HyperlogLogger { ctx }
        }

        /// Installs an adapter for `ctx` as the process's `log` logger, with
        /// the maximum level set from the context's minimum level.
        pub fn install(ctx: Context) -> Result<(), log::SetLoggerError> {
            let max = match ctx.level() {
                LogLevel::Trace => log::LevelFilter::Trace,
                LogLevel::Debug => log::LevelFilter::Debug,
                LogLevel::Info => log::LevelFilter::Info,
                LogLevel::Warn => log::LevelFilter::Warn,
                _ => log::LevelFilter::Error,
            };
            log::set_boxed_logger(Box::new(HyperlogLogger::new(ctx)))?;
            log::set_max_level(max);
            Ok(())
        }
    }

    fn level(l: log::Level) -> LogLevel {
        match l {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        }
    }

    impl log::Log for HyperlogLogger {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            level(metadata.level()) >= self.ctx.level()
        }

        fn log(&self, record: &log::Record<'_>) {
            if !self.enabled(record.metadata()) {
                return;
            }
            let entry = EcosystemEvent {
                message: Some(record.args().to_string()),
                level: level(record.level()),
                target: record.target().to_string(),
                spans: Vec::new(),
                fields: Vec::new(),
            };
            let site = CallSite {
                file: record.file_static(),
                function: record.module_path_static(),
                line: record.line(),
            };
            if let Err(e) = self.ctx.log_blocking_at(site, entry) {
                report(&self.ctx, e);
            }
        }

        fn flush(&self) {
            if let Err(e) = self.ctx.flush_blocking() {
                report(&self.ctx, e);
            }
        }
    }
}

#[cfg(feature = "log")]
pub use log_adapter::HyperlogLogger;

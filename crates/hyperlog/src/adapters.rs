//! Routing the ecosystem's logging calls into a context.
//!
//! - [`HyperlogLayer`] (feature `tracing`): a `tracing_subscriber::Layer`
//!   that logs every event (level, message, fields, and the spans it is in
//!   with their fields) into a [`Context`].
//! - [`HyperlogLogger`] (feature `log`): a `log::Log` that logs every record
//!   (level, message, target) into a [`Context`].
//!
//! Both log through [`Context::log_blocking_at`], so each call returns when
//! the entry is as durable as the context's mode promises: route hot async
//! paths to a `None` or `Flush` context, and control-plane events to a WAL
//! context. An error has no caller to return to here; it goes to the
//! context's error handler (by default one line on stderr per kind of error).
//!
//! The entry written is an [`EcosystemEvent`]; its documentation gives the
//! JSON shape, and [`HyperlogLayer`]'s an example with nested spans.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::{Context, Entry, LogLevel};

/// What an adapter logs: a `tracing` event or a `log` record.
///
/// It is written as a JSON object with, in this order:
///
/// | key | value |
/// | --- | --- |
/// | `message` | the event's `message` field (a string), or `null` |
/// | `tags` | always `[]` |
/// | `level` | `"TRACE"`, `"DEBUG"`, `"INFO"`, `"WARN"` or `"ERROR"` |
/// | `target` | the event's target (by default its module path) |
/// | `span` | the current (innermost) span, `{"name": ..., <its fields>}`; absent outside any span |
/// | `spans` | every span the event is in, root first, each `{"name": ..., <its fields>}`; `[]` outside any span |
/// | the event's fields | one key each, in the order they were recorded |
///
/// The first three are the base entry's ([`Message`](crate::Message)), so
/// these entries read back as plain messages too. `span` and `spans` are
/// those of `tracing-subscriber`'s JSON formatter (which writes `name` after
/// the fields; here it comes first). A span's fields are those given when it
/// was created, then those recorded later with `Span::record`, in the order
/// they were recorded; recording a field again replaces its value. A span
/// field named `name` is left out, as is an event field named like one of
/// the keys above, so that no key appears twice. Numbers, booleans and
/// strings are written as such; any other value as its `Debug` text.
///
/// ```
/// use std::sync::Arc;
/// use hyperlog::{EcosystemEvent, LogLevel, SpanFields};
/// let job = Arc::new(SpanFields { name: "job", fields: vec![("job_id", 7.into())] });
/// let step = Arc::new(SpanFields { name: "step", fields: vec![("n", 2.into())] });
/// let event = EcosystemEvent {
///     message: Some("step started".into()),
///     level: LogLevel::Info,
///     target: "app".into(),
///     spans: vec![job, step],
///     fields: vec![("attempt".into(), 2.into())],
/// };
/// assert_eq!(
///     serde_json::to_string(&event).unwrap(),
///     concat!(
///         r#"{"message":"step started","tags":[],"level":"INFO","target":"app","#,
///         r#""span":{"name":"step","n":2},"#,
///         r#""spans":[{"name":"job","job_id":7},{"name":"step","n":2}],"#,
///         r#""attempt":2}"#,
///     )
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EcosystemEvent {
    /// The formatted message (`message` field of a tracing event).
    pub message: Option<String>,
    /// The level.
    pub level: LogLevel,
    /// The event's target (module path by default).
    pub target: String,
    /// The spans the event is in, outermost (root) first; the last is the
    /// current span, written again on its own as `span`. The layer shares
    /// them with the span, so an event copies no span field.
    pub spans: Vec<std::sync::Arc<SpanFields>>,
    /// The event's other fields, in the order they were recorded.
    pub fields: Vec<(String, serde_json::Value)>,
}

/// A span an event is in: its name and its fields, written as
/// `{"name": ..., <fields>}`.
///
/// ```
/// let span = hyperlog::SpanFields {
///     name: "job",
///     fields: vec![("job_id", 7.into()), ("owner", "ada".into())],
/// };
/// assert_eq!(serde_json::to_string(&span).unwrap(), r#"{"name":"job","job_id":7,"owner":"ada"}"#);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SpanFields {
    /// The span's name.
    pub name: &'static str,
    /// Its fields: those given at creation, then those recorded later, in
    /// the order they were recorded. A field named `name` is not written.
    pub fields: Vec<(&'static str, serde_json::Value)>,
}

impl Serialize for SpanFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", self.name)?;
        for (k, v) in &self.fields {
            if *k != "name" {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// `spans` as a JSON list (serde serializes `Arc` only with its `rc`
/// feature).
struct SpanList<'a>(&'a [std::sync::Arc<SpanFields>]);

impl Serialize for SpanList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|span| &**span))
    }
}

impl Serialize for EcosystemEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("message", &self.message)?;
        m.serialize_entry("tags", &[] as &[&str])?;
        m.serialize_entry("level", &self.level)?;
        m.serialize_entry("target", &self.target)?;
        if let Some(current) = self.spans.last() {
            m.serialize_entry("span", &**current)?;
        }
        m.serialize_entry("spans", &SpanList(&self.spans))?;
        for (k, v) in &self.fields {
            if !matches!(
                k.as_str(),
                "message" | "tags" | "level" | "target" | "span" | "spans"
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
    use std::sync::Arc;

    use tracing_core::field::{Field, Visit};
    use tracing_core::span::{Attributes, Id, Record};
    use tracing_core::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context as LayerContext, Layer};
    use tracing_subscriber::registry::LookupSpan;

    use super::{EcosystemEvent, SpanFields, report};
    use crate::{CallSite, Context, LogLevel};

    /// A `tracing_subscriber::Layer` that logs events into a hyperlog
    /// context.
    ///
    /// Each event becomes an [`EcosystemEvent`](crate::EcosystemEvent) (see
    /// there for the JSON shape): its message, level, target and fields, the
    /// current span as `span` and every span it is in as `spans`, each with
    /// its name and fields. The layer records a span's fields when the span
    /// is created and when `Span::record` adds to them, and shares them with
    /// the events inside it; an event outside any span allocates nothing for
    /// spans.
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
    ///     let job = tracing::info_span!("job", job_id = 7, owner = tracing::field::Empty);
    ///     let _job = job.enter();
    ///     job.record("owner", "ada");
    ///     let step = tracing::info_span!("step", n = 2);
    ///     let _step = step.enter();
    ///     tracing::info!(target: "app", attempt = 2, "step started");
    /// });
    /// ctx.close_blocking().unwrap();
    /// let text = std::fs::read_to_string(dir.path().join("app.log.json")).unwrap();
    /// assert!(text.contains(concat!(
    ///     r#"{"message":"step started","tags":[],"level":"INFO","target":"app","#,
    ///     r#""span":{"name":"step","n":2},"#,
    ///     r#""spans":[{"name":"job","job_id":7,"owner":"ada"},{"name":"step","n":2}],"#,
    ///     r#""attempt":2}"#,
    /// )));
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

    fn debug_value(value: &dyn fmt::Debug) -> serde_json::Value {
        serde_json::Value::String(format!("{value:?}"))
    }

    /// Implements `Visit` for a type with one `put` method.
    macro_rules! visit_with_put {
        ($t:ty) => {
            impl Visit for $t {
                fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                    self.put(field, debug_value(value));
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
        };
    }

    /// An event's fields.
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

    visit_with_put!(Fields);

    impl SpanFields {
        /// Sets `field`: replaces its value if it has one, else appends it.
        fn put(&mut self, field: &Field, v: serde_json::Value) {
            let name = field.name();
            match self.fields.iter_mut().find(|(k, _)| *k == name) {
                Some((_, old)) => *old = v,
                None => self.fields.push((name, v)),
            }
        }
    }

    visit_with_put!(SpanFields);

    /// A span's fields, in its extensions. Every `HyperlogLayer` on a
    /// registry shares this one copy (what they record is the same).
    struct Recorded(Arc<SpanFields>);

    impl<S> Layer<S> for HyperlogLayer
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
            let Some(span) = ctx.span(id) else { return };
            let mut ext = span.extensions_mut();
            if ext.get_mut::<Recorded>().is_some() {
                return; // recorded by another HyperlogLayer
            }
            let mut fields = SpanFields {
                name: span.name(),
                fields: Vec::new(),
            };
            attrs.record(&mut fields);
            ext.insert(Recorded(Arc::new(fields)));
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
            let Some(span) = ctx.span(id) else { return };
            let mut ext = span.extensions_mut();
            if let Some(Recorded(fields)) = ext.get_mut::<Recorded>() {
                // Another HyperlogLayer may apply the same record again:
                // `put` replaces, so that changes nothing. Copies the fields
                // only if an event being logged holds them.
                let fields: &mut SpanFields = Arc::make_mut(fields);
                values.record(fields);
            }
        }

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
                .map(|scope| {
                    scope
                        .from_root()
                        .map(|span| match span.extensions().get::<Recorded>() {
                            Some(Recorded(fields)) => Arc::clone(fields),
                            // Not seen by on_new_span (the layer was added
                            // after the span was created): its name only.
                            None => Arc::new(SpanFields {
                                name: span.name(),
                                fields: Vec::new(),
                            }),
                        })
                        .collect()
                })
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

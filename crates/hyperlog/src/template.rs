//! Console templates: `{name}` placeholders over a Log's metadata and its
//! entry's top-level fields.
//!
//! A template is parsed once, when a context is configured, so that an
//! unknown placeholder, an unclosed brace or a bad format spec is an error
//! from `configure` and never a failure at log time. `{{` and `}}` stand for
//! literal braces. A placeholder may carry a format spec after a colon,
//! `[[fill]align][width][.precision]` with `align` one of `<`, `>`, `^`, as in
//! Python and Rust: `{level:<8}`, `{message:.80}`.
//!
//! Known names are the Log metadata (`timestamp`, `filename`,
//! `function_name`, `line_number`, `thread_id`, `lsn`, `context`), the
//! fields of the base entry (`message`, `level`, `tags`), and any extra
//! fields a context declares or its models carry. A known field that an
//! entry lacks renders as an empty string.

use std::fmt::Write as _;

use crate::Error;

/// The reference's default console template.
pub const DEFAULT_TEMPLATE: &str =
    "{timestamp} - {level} - {thread_id} - {filename}:{function_name}.{line_number} - {message}";

/// Placeholders that name Log metadata rather than entry fields.
pub const METADATA_FIELDS: [&str; 7] = [
    "timestamp",
    "filename",
    "function_name",
    "line_number",
    "thread_id",
    "lsn",
    "context",
];

/// The base entry's fields, always known.
pub const ENTRY_FIELDS: [&str; 3] = ["message", "level", "tags"];

/// Alignment of a padded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
    Center,
}

/// A parsed `[[fill]align][width][.precision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    fill: char,
    align: Align,
    width: usize,
    precision: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field { name: String, spec: Option<Spec> },
}

/// A parsed template.
///
/// ```
/// use hyperlog::Template;
/// let t = Template::parse("{level:>5} {message} {{done}}", &[]).unwrap();
/// assert_eq!(t.fields().collect::<Vec<_>>(), ["level", "message"]);
/// assert!(Template::parse("{nope}", &[]).is_err());
/// assert!(Template::parse("{message", &[]).is_err());
/// assert!(Template::parse("{message:>x}", &[]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `source`, accepting the metadata and base entry names plus
    /// `extra_fields`.
    pub fn parse(source: &str, extra_fields: &[&str]) -> Result<Template, Error> {
        let err = |position: usize, reason: String| Error::Template {
            template: source.to_string(),
            position,
            reason,
        };
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err(err(i, "a lone '}' (write '}}' for a literal brace)".into())),
                '{' => {
                    let mut body = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        if c == '{' {
                            return Err(err(i, "a '{' inside a placeholder".into()));
                        }
                        body.push(c);
                    }
                    if !closed {
                        return Err(err(
                            i,
                            "an unclosed '{' (write '{{' for a literal brace)".into(),
                        ));
                    }
                    let (name, spec) = match body.split_once(':') {
                        Some((n, s)) => (n, Some(parse_spec(s).map_err(|r| err(i, r))?)),
                        None => (body.as_str(), None),
                    };
                    if name.is_empty() {
                        return Err(err(i, "an empty placeholder '{}'".into()));
                    }
                    let known = METADATA_FIELDS.contains(&name)
                        || ENTRY_FIELDS.contains(&name)
                        || extra_fields.contains(&name);
                    if !known {
                        return Err(err(
                            i,
                            format!(
                                "unknown placeholder {{{name}}}: known names are {}, {}{}",
                                METADATA_FIELDS.join(", "),
                                ENTRY_FIELDS.join(", "),
                                if extra_fields.is_empty() {
                                    String::from(
                                        " (declare entry fields with ContextOptions::template_fields)",
                                    )
                                } else {
                                    format!(", {}", extra_fields.join(", "))
                                }
                            ),
                        ));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field {
                        name: name.to_string(),
                        spec,
                    });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// The template text as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The placeholder names, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field { name, .. } => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Whether rendering needs the entry's fields (else only metadata).
    pub fn needs_entry(&self) -> bool {
        self.fields().any(|f| !METADATA_FIELDS.contains(&f))
    }

    /// Renders with `lookup` giving each placeholder's value (`None`
    /// renders empty).
    pub fn render(&self, out: &mut String, mut lookup: impl FnMut(&str, &mut String) -> bool) {
        let mut value = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Field { name, spec } => {
                    value.clear();
                    lookup(name, &mut value);
                    match spec {
                        None => out.push_str(&value),
                        Some(spec) => pad(out, &value, spec),
                    }
                }
            }
        }
    }
}

fn parse_spec(s: &str) -> Result<Spec, String> {
    let bad = || format!("bad format spec {s:?}: expected [[fill]align][width][.precision]");
    let chars: Vec<char> = s.chars().collect();
    let align_of = |c: char| match c {
        '<' => Some(Align::Left),
        '>' => Some(Align::Right),
        '^' => Some(Align::Center),
        _ => None,
    };
    let mut i = 0;
    let mut spec = Spec {
        fill: ' ',
        align: Align::Left,
        width: 0,
        precision: None,
    };
    if chars.len() >= 2 && align_of(chars[1]).is_some() {
        spec.fill = chars[0];
        spec.align = align_of(chars[1]).ok_or_else(bad)?;
        i = 2;
    } else if let Some(a) = chars.first().and_then(|c| align_of(*c)) {
        spec.align = a;
        i = 1;
    }
    let digits = |from: usize| {
        chars[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let n = digits(i);
    if n > 0 {
        spec.width = chars[i..i + n]
            .iter()
            .collect::<String>()
            .parse()
            .map_err(|_| bad())?;
        i += n;
    }
    if chars.get(i) == Some(&'.') {
        let n = digits(i + 1);
        if n == 0 {
            return Err(bad());
        }
        spec.precision = Some(
            chars[i + 1..i + 1 + n]
                .iter()
                .collect::<String>()
                .parse()
                .map_err(|_| bad())?,
        );
        i += 1 + n;
    }
    if i != chars.len() {
        return Err(bad());
    }
    Ok(spec)
}

fn pad(out: &mut String, value: &str, spec: &Spec) {
    let value: String = match spec.precision {
        Some(p) => value.chars().take(p).collect(),
        None => value.to_string(),
    };
    let len = value.chars().count();
    let fill = spec.width.saturating_sub(len);
    let (before, after) = match spec.align {
        Align::Left => (0, fill),
        Align::Right => (fill, 0),
        Align::Center => (fill / 2, fill - fill / 2),
    };
    out.extend(std::iter::repeat_n(spec.fill, before));
    out.push_str(&value);
    out.extend(std::iter::repeat_n(spec.fill, after));
}

/// Writes a JSON value as template text: strings bare, `null` empty, arrays
/// of strings joined by commas, anything else as JSON.
pub(crate) fn write_value(out: &mut String, v: &serde_json::Value) {
    match v {
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push_str(s),
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_string()) => {
            for (n, i) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(i.as_str().unwrap_or_default());
            }
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &Template, pairs: &[(&str, &str)]) -> String {
        let mut out = String::new();
        t.render(&mut out, |name, v| {
            match pairs.iter().find(|p| p.0 == name) {
                Some(p) => {
                    v.push_str(p.1);
                    true
                }
                None => false,
            }
        });
        out
    }

    #[test]
    fn default_template_parses_and_renders() {
        let t = Template::parse(DEFAULT_TEMPLATE, &[]).unwrap();
        let s = render(
            &t,
            &[
                ("timestamp", "T"),
                ("level", "INFO"),
                ("thread_id", "7"),
                ("filename", "a.rs"),
                ("function_name", "f"),
                ("line_number", "3"),
                ("message", "hi"),
            ],
        );
        assert_eq!(s, "T - INFO - 7 - a.rs:f.3 - hi");
    }

    #[test]
    fn escapes_and_specs() {
        let t =
            Template::parse("{{{level:*^7}}} [{message:.3}] {lsn:>4}|{message:<5}|", &[]).unwrap();
        let s = render(
            &t,
            &[("level", "WARN"), ("message", "abcdef"), ("lsn", "9")],
        );
        assert_eq!(s, "{*WARN**} [abc]    9|abcdef|");
    }

    #[test]
    fn every_error_case_is_reported_at_parse_time() {
        for (bad, needle) in [
            ("{nope}", "unknown placeholder {nope}"),
            ("{message", "unclosed"),
            ("message}", "lone '}'"),
            ("{}", "empty placeholder"),
            ("{message:>x}", "bad format spec"),
            ("{message:.}", "bad format spec"),
            ("{message:<<<}", "bad format spec"),
            ("{mes{sage}", "inside a placeholder"),
        ] {
            let e = Template::parse(bad, &[]).unwrap_err();
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn declared_extra_fields_are_known() {
        assert!(Template::parse("{job_id}", &[]).is_err());
        let t = Template::parse("{job_id}", &["job_id"]).unwrap();
        assert!(t.needs_entry());
        assert!(!Template::parse("{timestamp}", &[]).unwrap().needs_entry());
    }

    #[test]
    fn values_render_as_text() {
        let mut s = String::new();
        write_value(&mut s, &serde_json::json!(["a", "b"]));
        s.push('|');
        write_value(&mut s, &serde_json::Value::Null);
        s.push('|');
        write_value(&mut s, &serde_json::json!(42));
        assert_eq!(s, "a,b||42");
    }
}

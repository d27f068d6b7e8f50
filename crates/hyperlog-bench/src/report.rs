//! Results: Markdown tables for people, JSON for tools.

use serde::{Deserialize, Serialize};

/// One scenario's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section {
    /// Short name (`flush`, `durable`, `readback`).
    pub name: String,
    /// A heading for the Markdown.
    pub title: String,
    /// What was run and how to read it, one note per line.
    pub notes: Vec<String>,
    /// The main table.
    pub table: Table,
    /// Derived ratios, each with what it divides.
    pub ratios: Vec<Ratio>,
    /// Every figure, unformatted, for `bench-results.json` (a string under
    /// `extra_markdown` is a second table, appended to the Markdown).
    pub data: serde_json::Value,
}

/// A table of already formatted cells.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Table {
    /// Column headings.
    pub headers: Vec<String>,
    /// Rows, as many cells as headings.
    pub rows: Vec<Vec<String>>,
}

/// A ratio between two measured figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    /// What is divided by what.
    pub what: String,
    /// The value.
    pub value: f64,
}

impl Table {
    /// An empty table with these headings.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as GitHub Markdown, columns padded for reading in a
    /// terminal.
    pub fn to_markdown(&self) -> String {
        let cols = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in width.iter().enumerate() {
                let c = cells.get(i).map_or("", String::as_str);
                s.push_str(&format!(" {c:<w$} |"));
            }
            s.push('\n');
            s
        };
        let mut out = line(&self.headers);
        out.push('|');
        for w in &width {
            out.push_str(&format!("{}|", "-".repeat(w + 2)));
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

impl Section {
    /// The section as Markdown: heading, notes, table, ratios.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("## {}\n\n", self.title);
        for n in &self.notes {
            out.push_str(&format!("- {n}\n"));
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out.push_str(&self.table.to_markdown());
        // A second table, already rendered, where a scenario has one.
        if let Some(extra) = self.data.get("extra_markdown").and_then(|v| v.as_str()) {
            out.push_str(extra);
        }
        if !self.ratios.is_empty() {
            out.push_str("\n| ratio | value |\n|---|---|\n");
            for r in &self.ratios {
                out.push_str(&format!("| {} | {:.2}x |\n", r.what, r.value));
            }
        }
        out
    }
}

/// Entries (or bytes) per second with thousands separators: `1,234,567`.
pub fn rate(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A number with a sensible number of decimals for a table.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `a / b`, or NaN when `b` is zero.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { f64::NAN } else { a / b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rate(1234567.4), "1,234,567");
        assert_eq!(rate(999.0), "999");
        assert_eq!(num(1.23456), "1.23");
        assert_eq!(num(123.456), "123");
        let mut t = Table::new(&["a", "bb"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(
            t.to_markdown(),
            "| a   | bb |\n|-----|----|\n| xyz | 1  |\n"
        );
    }
}

//! PNG charts of a run (plotters' bitmap backend; text drawn with
//! `ab_glyph` from an embedded DejaVu Sans Mono, so nothing is needed from
//! the system: no fontconfig, no freetype).
//!
//! - `throughput-durable.png`: entries/s against producers, per system,
//!   with the physical bound of the run (producers x the bare loop's
//!   syncs/s), 100 B and 1 KiB side by side, log scales;
//! - `throughput-logger.png`: entries/s against producer threads, per
//!   logger (the non-durable data plane);
//! - `latency-durable.png`: p50, p99 and p99.9 acknowledgement latency per
//!   system at 1 and 64 producers (100 B).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

use crate::report::Section;

/// The embedded font (Bitstream Vera license, see
/// `assets/DejaVuSansMono-LICENSE.txt`).
const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

const FAMILY: &str = "sans-serif";

fn register() -> Result<(), String> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font(FAMILY, FontStyle::Bold, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err("could not load the embedded font".into())
    }
}

const COLORS: [RGBColor; 11] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(120, 40, 140),
];

/// One line of a chart: a name and a value per x category (None: not run).
type Series = (String, Vec<Option<f64>>);

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("chart: {e}")
}

/// A line chart over categorical x values with a logarithmic y axis.
fn line_chart(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    x_desc: &str,
    x_labels: &[String],
    y_desc: &str,
    series: &[Series],
) -> Result<(), String> {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if values.is_empty() {
        (1.0, 10.0)
    } else {
        (lo / 2.0, hi * 3.0)
    };
    let n = x_labels.len() as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-1i32..n, (lo..hi).log_scale())
        .map_err(err)?;
    let fmt_x = |x: &i32| {
        usize::try_from(*x)
            .ok()
            .and_then(|i| x_labels.get(i).cloned())
            .unwrap_or_default()
    };
    let fmt_y = |y: &f64| {
        if *y >= 1e6 {
            format!("{:.1}M", y / 1e6)
        } else if *y >= 1e3 {
            format!("{:.0}k", y / 1e3)
        } else {
            format!("{y:.0}")
        }
    };
    chart
        .configure_mesh()
        .x_labels((n + 2) as usize)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FAMILY, 14))
        .draw()
        .map_err(err)?;
    for (k, (name, vals)) in series.iter().enumerate() {
        // The physical bound is a reference line, not a system: black.
        let color = if name.starts_with("physical bound") {
            RGBColor(0, 0, 0)
        } else {
            COLORS[k % COLORS.len()]
        };
        let points: Vec<(i32, f64)> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.filter(|v| v.is_finite() && *v > 0.0)
                    .map(|v| (i as i32, v))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 13))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    Ok(())
}

fn section<'a>(sections: &'a [Section], name: &str) -> Option<&'a Section> {
    sections.iter().find(|s| s.name == name)
}

fn f(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The durable rows as (series name, message bytes, producers, row).
fn durable_rows(s: &Section) -> Vec<(String, u64, u64, &Value)> {
    s.data
        .get("shapes")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    let system = r.get("system")?.as_str()?;
                    let driver = r.get("driver")?.as_str()?;
                    let name = if system.starts_with("hyperlog") {
                        format!("{system} ({driver})")
                    } else {
                        system.to_string()
                    };
                    Some((
                        name,
                        r.get("message_bytes")?.as_u64()?,
                        r.get("producers")?.as_u64()?,
                        r,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn names_in_order<'a>(rows: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in rows {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

fn throughput_durable(s: &Section, path: &Path) -> Result<(), String> {
    let rows = durable_rows(s);
    let producers = crate::durable::PRODUCERS;
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let halves = root.split_evenly((1, 2));
    // The same names (so the same colours) in both panels; a series with
    // no point in a panel is not drawn there.
    let names = names_in_order(rows.iter().map(|r| &r.0));
    for (area, size) in halves.iter().zip(crate::durable::SIZES) {
        let names = names.clone();
        let series: Vec<Series> = names
            .into_iter()
            .map(|name| {
                let vals = producers
                    .iter()
                    .map(|&p| {
                        rows.iter()
                            .find(|r| r.0 == name && r.1 == size as u64 && r.2 == p as u64)
                            .and_then(|r| f(r.3, "entries_per_s_median"))
                    })
                    .collect();
                (name, vals)
            })
            .chain(
                s.data
                    .get("bare_syncs_per_s")
                    .and_then(Value::as_f64)
                    .map(|bare| {
                        (
                            "physical bound: producers x bare syncs/s".to_string(),
                            producers.iter().map(|&p| Some(p as f64 * bare)).collect(),
                        )
                    }),
            )
            .collect();
        let size_label = if size >= 1024 {
            format!("{} KiB", size / 1024)
        } else {
            format!("{size} B")
        };
        line_chart(
            area,
            &format!("Durable: entries/s, {size_label} messages"),
            "producers",
            &producers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "entries/s (log)",
            &series,
        )?;
    }
    root.present().map_err(err)
}

fn latency_durable(s: &Section, path: &Path) -> Result<(), String> {
    let rows = durable_rows(s);
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let halves = root.split_evenly((1, 2));
    let pcts = [("p50", "p50"), ("p99", "p99"), ("p99.9", "p99_9")];
    let names = names_in_order(rows.iter().map(|r| &r.0));
    for (area, producers) in halves.iter().zip([1u64, 64]) {
        let series: Vec<Series> = names
            .iter()
            .map(|name| {
                let row = rows
                    .iter()
                    .find(|r| &r.0 == name && r.1 == 100 && r.2 == producers);
                let lat = row.and_then(|r| r.3.get("latency_us"));
                (
                    name.clone(),
                    pcts.iter()
                        .map(|(_, k)| lat.and_then(|l| f(l, k)))
                        .collect(),
                )
            })
            .collect();
        line_chart(
            area,
            &format!("Durable: acknowledgement latency, 100 B, {producers} producer(s)"),
            "percentile",
            &pcts.iter().map(|p| p.0.to_string()).collect::<Vec<_>>(),
            "microseconds (log)",
            &series,
        )?;
    }
    root.present().map_err(err)
}

fn throughput_logger(s: &Section, py: Option<&Section>, path: &Path) -> Result<(), String> {
    let mut rows: Vec<(String, u64, f64)> = s
        .data
        .get("variants")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    Some((
                        r.get("logger")?.as_str()?.to_string(),
                        r.get("threads")?.as_u64()?,
                        f(r, "entries_per_s_median")?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    // The Python reference, where it ran (asyncio tasks).
    if let Some(runs) = py
        .and_then(|p| p.data.get("runs"))
        .and_then(Value::as_array)
    {
        for r in runs {
            if let (Some(t), Some(v)) = (
                r.get("tasks").and_then(Value::as_u64),
                f(r, "entries_per_s_median"),
            ) {
                rows.push(("hyperscale.logging (Python, tasks)".into(), t, v));
            }
        }
    }
    let mut threads: Vec<u64> = rows.iter().map(|r| r.1).collect();
    threads.sort_unstable();
    threads.dedup();
    let names = names_in_order(rows.iter().map(|r| &r.0));
    let series: Vec<Series> = names
        .into_iter()
        .map(|name| {
            let vals = threads
                .iter()
                .map(|&t| rows.iter().find(|r| r.0 == name && r.1 == t).map(|r| r.2))
                .collect();
            (name, vals)
        })
        .collect();
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    line_chart(
        &root,
        "Non-durable loggers: entries/s, 100 B messages, JSON file",
        "producers",
        &threads.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "entries/s (log)",
        &series,
    )?;
    root.present().map_err(err)
}

/// Draws every chart whose data is in `sections` into `dir`; returns the
/// files written.
pub fn write_all(sections: &[Section], dir: &Path) -> Result<Vec<PathBuf>, String> {
    register()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    if let Some(s) = section(sections, "durable") {
        let p = dir.join("throughput-durable.png");
        throughput_durable(s, &p)?;
        out.push(p);
        let p = dir.join("latency-durable.png");
        latency_durable(s, &p)?;
        out.push(p);
    }
    if let Some(s) = section(sections, "flush") {
        let p = dir.join("throughput-logger.png");
        throughput_logger(s, section(sections, "python"), &p)?;
        out.push(p);
    }
    Ok(out)
}

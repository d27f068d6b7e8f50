//! `stats`: levels, rate over time and record sizes of a log.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Recovery;
use crate::util::{Fail, Out, civil, parse_ts_secs, style, walk};

#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    entry: Option<LevelOnly>,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(serde::Deserialize)]
struct LevelOnly {
    #[serde(default)]
    level: Option<String>,
}

/// The value at quantile `q` of sorted `v`.
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn hms(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `hyperlog stats`.
pub fn stats(
    path: &Path,
    recovery: Recovery,
    format: Option<hyperlog::LogFormat>,
) -> Result<u8, Fail> {
    let mut levels: BTreeMap<hyperlog::LogLevel, u64> = BTreeMap::new();
    let mut other_levels: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_sec: BTreeMap<i64, u64> = BTreeMap::new();
    let mut sizes: Vec<u64> = Vec::new();
    let mut undated = 0u64;
    let end = walk(path, 0, None, recovery.mode(), format, |_, e| {
        sizes.push(e.end - e.offset);
        let head: Option<Head> = serde_json::from_slice(&e.payload).ok();
        let level = head
            .as_ref()
            .and_then(|h| h.entry.as_ref())
            .and_then(|en| en.level.clone());
        match level {
            None => *levels.entry(hyperlog::LogLevel::Info).or_default() += 1,
            Some(l) => match l.parse::<hyperlog::LogLevel>() {
                Ok(l) => *levels.entry(l).or_default() += 1,
                Err(_) => *other_levels.entry(l).or_default() += 1,
            },
        }
        match head
            .and_then(|h| h.timestamp)
            .as_deref()
            .and_then(parse_ts_secs)
        {
            Some(s) => *per_sec.entry(s).or_default() += 1,
            None => undated += 1,
        }
        Ok(true)
    })?;
    let mut out = Out::new();
    let b = style::BOLD;
    let total = sizes.len() as u64;
    let archive = if end.archives.iter().any(|a| a == path) {
        " (a zstd archive, read decompressed)"
    } else {
        ""
    };
    out.line(&format!(
        "{b}{}{b:#}: {total} entries{archive}",
        path.display()
    ))?;

    out.line(&format!("{b}levels{b:#}"))?;
    for (l, n) in &levels {
        let st = style::level(l.as_str());
        out.line(&format!("  {st}{:<9}{st:#} {n:>10}", l.as_str()))?;
    }
    for (l, n) in &other_levels {
        out.line(&format!("  {l:<9} {n:>10}"))?;
    }

    out.line(&format!("{b}entries per second{b:#}"))?;
    if let (Some((&first, _)), Some((&last, _))) =
        (per_sec.first_key_value(), per_sec.last_key_value())
    {
        let span = last - first + 1;
        // Every second from the first to the last, idle ones included
        // (only the busy ones when the log spans months).
        let mut rates: Vec<u64> = if span <= 10_000_000 {
            (first..=last)
                .map(|s| per_sec.get(&s).copied().unwrap_or(0))
                .collect()
        } else {
            per_sec.values().copied().collect()
        };
        rates.sort_unstable();
        let (busiest, peak) = per_sec
            .iter()
            .max_by_key(|&(s, n)| (*n, std::cmp::Reverse(*s)))
            .map(|(s, n)| (*s, *n))
            .unwrap_or((first, 0));
        out.line(&format!(
            "  span      {} .. {} ({span} s)",
            hms(first),
            hms(last)
        ))?;
        out.line(&format!(
            "  min {}  median {}  max {}  mean {:.1}",
            rates[0],
            quantile(&rates, 0.5),
            rates[rates.len() - 1],
            (total - undated) as f64 / span as f64
        ))?;
        out.line(&format!("  busiest   {} with {peak} entries", hms(busiest)))?;
    } else {
        out.line("  no timestamps")?;
    }
    if undated > 0 {
        out.line(&format!("  {undated} entries without a readable timestamp"))?;
    }

    out.line(&format!("{b}record sizes (bytes){b:#}"))?;
    sizes.sort_unstable();
    if sizes.is_empty() {
        out.line("  no records")?;
    } else {
        out.line(&format!(
            "  min {}  p50 {}  p90 {}  p99 {}  max {}",
            sizes[0],
            quantile(&sizes, 0.5),
            quantile(&sizes, 0.9),
            quantile(&sizes, 0.99),
            sizes[sizes.len() - 1]
        ))?;
        let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
        for &s in &sizes {
            *hist.entry(s.max(1).next_power_of_two()).or_default() += 1;
        }
        let peak = hist.values().copied().max().unwrap_or(1);
        for (bucket, n) in &hist {
            let bar = "#".repeat(((n * 40).div_ceil(peak)) as usize);
            out.line(&format!("  <= {bucket:>9} {n:>10} {bar}"))?;
        }
    }
    let side = hyperlog::segments::torn_side_files(&hyperlog::fs::StdFs, path)
        .map_err(|e| crate::util::Fail::std("list the directory of", path, e))?;
    if !side.is_empty() {
        out.line(&format!("{b}torn-tail side files{b:#}"))?;
        crate::verify::print_side_files(&mut out, &side)?;
    }
    out.flush()?;
    Ok(0)
}

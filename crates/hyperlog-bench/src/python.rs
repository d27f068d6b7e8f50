//! The Python reference: `hyperscale.logging` (with msgspec), the library
//! hyperlog's API follows, run through the same data-plane scenario (JSON
//! lines to a file, 100-byte messages, 1 and 64 producers as asyncio tasks
//! awaiting `ctx.log(Entry(...))`, which returns once the line is written
//! and flushed to the OS, like hyperlog's `Flush`).
//!
//! The harness never installs it: the interpreter is `--python` (default
//! `python3`); if `import hyperscale.logging, msgspec` fails there, the
//! scenario reports "skipped: hyperscale not importable". The script is
//! `scripts/hyperscale_reference.py`, embedded in the binary.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::measure::median;
use crate::report::{Section, Table, num, rate};
use crate::{Settings, payload};

const SCRIPT: &str = include_str!("../scripts/hyperscale_reference.py");

/// Producer counts run.
pub const TASKS: [usize; 2] = [1, 64];

/// Whether `python` imports `hyperscale.logging` and msgspec.
pub fn importable(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import hyperscale.logging, msgspec"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How many progress steps [`run`] counts.
pub fn planned_runs(s: &Settings, python: &str) -> u64 {
    if importable(python) {
        (TASKS.len() * s.rounds) as u64
    } else {
        0
    }
}

/// Runs the reference, or returns `Ok(None)` when it is not importable.
pub fn run(s: &Settings, python: &str) -> Result<Option<Section>, String> {
    if !importable(python) {
        return Ok(None);
    }
    let dir = s.tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let script = dir.path().join("hyperscale_reference.py");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("write script: {e}"))?;
    let text = payload::text(100);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); TASKS.len()];
    for round in 0..s.rounds {
        for (i, tasks) in TASKS.iter().enumerate() {
            let log = dir.path().join(format!("ref-{round}-{tasks}.log.json"));
            // stdout and stderr must be pipes: hyperscale's stream opens
            // them with asyncio's connect_write_pipe.
            let out = Command::new(python)
                .arg(&script)
                .arg(&log)
                .arg(tasks.to_string())
                .arg(s.run.as_secs_f64().to_string())
                .arg(&text)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("run {python}: {e}"))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout
                .lines()
                .rev()
                .find(|l| l.starts_with('{'))
                .ok_or_else(|| {
                    format!(
                        "python reference printed no result: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })?;
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("python result {line}: {e}"))?;
            let entries = v["entries"].as_f64().unwrap_or(0.0);
            let secs = v["secs"].as_f64().unwrap_or(f64::NAN);
            let r = entries / secs;
            crate::progress::done(format!(
                "python round {}/{}: hyperscale.logging x{tasks} {:>10} entries/s",
                round + 1,
                s.rounds,
                rate(r)
            ));
            rates[i].push(r);
            let _ = std::fs::remove_file(&log);
        }
    }
    let mut table = Table::new(&["logger", "producers (asyncio tasks)", "entries/s (median)"]);
    let mut data = Vec::new();
    for (i, tasks) in TASKS.iter().enumerate() {
        let m = median(&rates[i]);
        table.row(vec![
            "hyperscale.logging (Python, msgspec)".into(),
            tasks.to_string(),
            rate(m),
        ]);
        data.push(json!({"tasks": tasks, "entries_per_s_median": m, "runs": rates[i]}));
    }
    let version = Command::new(python)
        .args(["--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok(Some(Section {
        name: "python".into(),
        title: "Python reference: hyperscale.logging".into(),
        notes: vec![
            format!(
                "{version}, interpreter `{python}`; {} round(s) of {} s; `await ctx.log(Entry(message=text, level=LogLevel.INFO))` in a loop from each task, into a JSON file (one msgspec-encoded line per entry, written and flushed from the default executor).",
                s.rounds,
                num(s.run.as_secs_f64())
            ),
            "Compare with `hyperlog Flush JSON, tokio tasks` (same promise: written to the OS) in the data-plane table.".into(),
        ],
        table,
        ratios: Vec::new(),
        data: json!({ "runs": data }),
    }))
}

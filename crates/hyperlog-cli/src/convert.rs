//! `convert`: JSON lines <-> binary records, keeping LSNs.

use std::io::Write;
use std::path::Path;

use hyperlog::format::json_tail_lsn;
use hyperlog::{LogFormat, Lsn, RecoveryMode};
use serde_json::Value;

use crate::util::{Fail, Out, check_overwrite, sync_parent, walk};

/// The payload with its JSON `lsn` field set to `lsn` (the binary header's),
/// when they differ.
fn with_lsn(payload: &[u8], lsn: Option<Lsn>) -> Vec<u8> {
    let stored = json_tail_lsn(payload);
    if stored == Some(lsn) {
        return payload.to_vec();
    }
    if let (Some(None), Some(l)) = (stored, lsn)
        && let Some(head) = payload.strip_suffix(b"null}")
    {
        let mut v = head.to_vec();
        v.extend_from_slice(l.get().to_string().as_bytes());
        v.push(b'}');
        return v;
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(mut m)) => {
            let old = m.get("lsn").and_then(Value::as_u64);
            if old == lsn.map(Lsn::get) {
                return payload.to_vec();
            }
            if let Some(l) = lsn {
                m.insert("lsn".into(), l.get().into());
            }
            serde_json::to_vec(&Value::Object(m)).unwrap_or_else(|_| payload.to_vec())
        }
        _ => payload.to_vec(),
    }
}

/// The call-site fields the Python reference requires as a string or an
/// integer (its reader refuses a line where any is `null` or missing).
const REQUIRED: [&str; 5] = [
    "filename",
    "function_name",
    "line_number",
    "thread_id",
    "timestamp",
];

/// What stands in for an unknown required field: what hyperlog writes.
fn unknown(field: &str) -> Value {
    match field {
        "line_number" | "thread_id" => Value::from(0),
        _ => Value::from(""),
    }
}

/// A JSON line for `payload`: its `lsn` set to the binary header's, and any
/// required field a log from an older hyperlog or another tool left `null`
/// or out filled in, so the reference reads every line `convert` writes.
/// Lines that need neither are copied byte for byte.
fn json_line(payload: &[u8], lsn: Option<Lsn>) -> Vec<u8> {
    // Decoded only to check that each field is there with its type.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Present {
        filename: String,
        function_name: String,
        line_number: u64,
        thread_id: u64,
        timestamp: String,
    }
    if serde_json::from_slice::<Present>(payload).is_ok() {
        return with_lsn(payload, lsn);
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(mut m)) => {
            for key in REQUIRED {
                if m.get(key).is_none_or(Value::is_null) {
                    m.insert(key.into(), unknown(key));
                }
            }
            if let Some(l) = lsn {
                m.insert("lsn".into(), l.get().into());
            } else {
                m.entry("lsn").or_insert(Value::Null);
            }
            serde_json::to_vec(&Value::Object(m)).unwrap_or_else(|_| payload.to_vec())
        }
        _ => with_lsn(payload, lsn),
    }
}

/// `hyperlog convert`.
pub fn convert(input: &Path, output: &Path, to: LogFormat, force: bool) -> Result<u8, Fail> {
    if input == output {
        return Err(Fail::io(format!(
            "{}: input and output are the same file",
            input.display()
        )));
    }
    check_overwrite(output, force)?;
    let mut buf = Vec::new();
    let mut n = 0u64;
    walk(input, 0, None, RecoveryMode::TolerateTail, None, |_, e| {
        match to {
            LogFormat::Binary => hyperlog::format::encode_binary(&e.payload, e.lsn, &mut buf),
            LogFormat::Json => {
                buf.extend_from_slice(&json_line(&e.payload, e.lsn));
                buf.push(b'\n');
            }
        }
        n += 1;
        Ok(true)
    })?;
    let tmp = std::path::PathBuf::from(format!("{}.converting", output.display()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Fail::std("create", &tmp, e))?;
    f.write_all(&buf)
        .and_then(|()| f.sync_all())
        .map_err(|e| Fail::std("write", &tmp, e))?;
    std::fs::rename(&tmp, output).map_err(|e| Fail::std("rename to", output, e))?;
    sync_parent(output);
    let mut out = Out::new();
    let name = match to {
        LogFormat::Json => "JSON lines",
        LogFormat::Binary => "binary records",
    };
    out.line(&format!(
        "converted {n} entries from {} into {} ({name}, {} bytes)",
        input.display(),
        output.display(),
        buf.len()
    ))?;
    out.flush()?;
    Ok(0)
}

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
    walk(input, 0, RecoveryMode::TolerateTail, |_, e| {
        match to {
            LogFormat::Binary => hyperlog::format::encode_binary(&e.payload, e.lsn, &mut buf),
            LogFormat::Json => {
                buf.extend_from_slice(&with_lsn(&e.payload, e.lsn));
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

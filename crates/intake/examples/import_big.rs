//! Imports a generated container of N key packages (default 100,000) and prints the time;
//! run under `/usr/bin/time -v` to read the peak memory (maximum resident set size).
//!
//! `import_big [N] [stream|memory|encrypted]`: `stream` generates the XML while it is
//! parsed (the file is never whole anywhere), `memory` parses it from one buffer,
//! `encrypted` from one buffer written by the encrypted exporter (AES-256, HMAC-SHA256).

use std::io::Read;
use std::time::Instant;

use okey_intake::synthetic::SyntheticPskc;
use okey_intake::{ExportProtection, PskcOptions, PskcReader, check_all};
use zeroize::Zeroizing;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let mode = args.next().unwrap_or_else(|| "stream".into());
    let key = Zeroizing::new(vec![7u8; 32]);
    let (buffer, options) = match mode.as_str() {
        "stream" => (None, PskcOptions::plain()),
        "memory" => {
            let mut v = Vec::new();
            SyntheticPskc::new(n).read_to_end(&mut v)?;
            (Some(v), PskcOptions::plain())
        }
        "encrypted" => {
            let packages =
                PskcReader::new(SyntheticPskc::new(n), PskcOptions::plain()).filter_map(Result::ok);
            let (v, _) = okey_intake::export(
                Vec::new(),
                ExportProtection::pre_shared_key(key.clone(), "k"),
                packages,
            )?;
            (Some(v), PskcOptions::with_key(key))
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let bytes = buffer.as_ref().map_or(0, Vec::len);
    let start = Instant::now();
    let count = match &buffer {
        None => check_all(PskcReader::new(SyntheticPskc::new(n), options))?,
        Some(v) => check_all(PskcReader::new(v.as_slice(), options))?,
    };
    let elapsed = start.elapsed();
    println!(
        "mode={mode} packages={count} input_bytes={bytes} parse_seconds={:.3} per_package_us={:.2}",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / count.max(1) as f64
    );
    Ok(())
}

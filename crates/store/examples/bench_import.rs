//! Import 1,000,000 tokens, then load every key into the cache and report the resident memory
//! per cached token. Run in release:
//! `cargo run --release -p okey-store --example bench_import -- [tokens] [parent dir]`.
//!
//! The cache is measured in a fresh child process (this program re-run with `--cache`), so the
//! memory the import freed cannot hide what the cache takes.

use std::time::Instant;

use okey_store::*;

fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident shared text lib data dt, in pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn config(dir: &std::path::Path, n: usize) -> StoreConfig {
    StoreConfig {
        master_key: MasterKeySource::Bytes(Zeroizing::new([5; 32])),
        cache_capacity: n,
        ..StoreConfig::in_dir(dir)
    }
}

fn cache(dir: &std::path::Path, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(config(dir, n))?;
    let before = rss_bytes();
    let start = Instant::now();
    for i in 0..n {
        store.prefetch(&format!("{i:08}"))?;
    }
    let after = rss_bytes();
    let cached = store.stats().cache_entries;
    println!(
        "cached {cached} keys in {:.2} s; resident memory {:.1} MiB -> {:.1} MiB: {:.0} bytes per cached token",
        start.elapsed().as_secs_f64(),
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
        after.saturating_sub(before) as f64 / cached.max(1) as f64
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    if args.next_if_eq("--cache").is_some() {
        let dir = args.next().ok_or("--cache needs a directory")?;
        let n: usize = args.next().ok_or("--cache needs a count")?.parse()?;
        return cache(std::path::Path::new(&dir), n);
    }
    let n: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let dir = tempfile::tempdir_in(args.next().unwrap_or_else(|| ".".into()))?;
    let store = Store::open(config(dir.path(), n))?;
    let actor = Actor::new("bench", "bench");
    let seed: Vec<u8> = (0..20u8).collect();
    let batch: Vec<NewToken> = (0..n)
        .map(|i| NewToken {
            valid_until: None,
            serial: format!("{i:08}"),
            kind: TokenKind::Hardware,
            otp: OtpKind::Hotp,
            algorithm: Algorithm::Sha1,
            digits: 6,
            seed: Zeroizing::new(seed.clone()),
            counter: 0,
            drift: 0,
            status: TokenStatus::Active,
            holder: Some(format!("user{i}")),
            description: None,
        })
        .collect();
    let start = Instant::now();
    let imported = store.import_tokens(batch, &actor)?;
    let import = start.elapsed();
    println!(
        "imported {imported} tokens in one transaction in {:.2} s ({:.0} tokens/s)",
        import.as_secs_f64(),
        imported as f64 / import.as_secs_f64()
    );
    let db = std::fs::metadata(dir.path().join("okey.db"))?.len();
    println!("database size: {:.1} MiB", db as f64 / (1 << 20) as f64);

    drop(store);
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--cache")
        .arg(dir.path())
        .arg(n.to_string())
        .status()?;
    if !status.success() {
        return Err("the cache measurement failed".into());
    }
    Ok(())
}

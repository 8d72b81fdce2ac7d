//! Import time of a 100,000-package PSKC container held in memory: plain, and encrypted
//! (AES-256-CBC under a pre-shared key, HMAC-SHA256 value MACs, as okey exports).
//! Peak memory is measured separately with `examples/import_big.rs` under `time -v`.

use std::hint::black_box;
use std::io::Read;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use okey_intake::synthetic::SyntheticPskc;
use okey_intake::{ExportProtection, PskcOptions, PskcReader};
use zeroize::Zeroizing;

const N: usize = 100_000;

fn import(data: &[u8], options: &PskcOptions) -> usize {
    let mut n = 0;
    for item in PskcReader::new(data, options.clone()) {
        match item {
            Ok(p) => n += black_box(p.secret.len()).min(1),
            Err(e) => panic!("{e}"),
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut plain = Vec::new();
    if let Err(e) = SyntheticPskc::new(N).read_to_end(&mut plain) {
        panic!("{e}");
    }
    let key = Zeroizing::new(vec![7u8; 32]);
    let packages = PskcReader::new(plain.as_slice(), PskcOptions::plain()).map(|r| match r {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    });
    let encrypted = match okey_intake::export(
        Vec::new(),
        ExportProtection::pre_shared_key(key.clone(), "bench"),
        packages,
    ) {
        Ok((out, _)) => out,
        Err(e) => panic!("{e}"),
    };

    let mut g = c.benchmark_group("pskc_import_100k");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(N as u64));
    let plain_opts = PskcOptions::plain();
    g.bench_function("plain", |b| {
        b.iter(|| assert_eq!(import(&plain, &plain_opts), N))
    });
    let enc_opts = PskcOptions::with_key(key.clone());
    g.bench_function("aes256_hmac_sha256", |b| {
        b.iter(|| assert_eq!(import(&encrypted, &enc_opts), N))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

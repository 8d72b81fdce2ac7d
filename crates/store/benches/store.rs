//! Store benchmarks, run with `cargo bench -p okey-store --bench store`.
//!
//! * `durable_commits/{group_commit,per_commit}`: accepted verifies per second, each one a
//!   durable (fsync'd) state change, from 1024 concurrent tasks (`OKEY_BENCH_TASKS`) on
//!   distinct tokens; the two
//!   durability modes are measured in the same run so their ratio is meaningful.
//! * `verify/{cached,uncached}/{1000,1000000}`: the same verify workload (250 concurrent tasks, a
//!   working set of 1,000 tokens) against a store holding 1,000 or 1,000,000 tokens; `uncached`
//!   empties the key cache first so every verify reads and unseals its row.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use okey_otp::{Digits, OtpKey};
use okey_store::*;

const SEED: &[u8] = b"12345678901234567890";

fn actor() -> Actor {
    Actor::new("bench", "bench")
}

fn token(serial: String) -> NewToken {
    NewToken {
        valid_until: None,
        serial,
        kind: TokenKind::Hardware,
        otp: OtpKind::Hotp,
        algorithm: Algorithm::Sha1,
        digits: 6,
        seed: Zeroizing::new(SEED.to_vec()),
        counter: 0,
        drift: 0,
        status: TokenStatus::Active,
        holder: None,
        description: None,
    }
}

fn serial(i: usize) -> String {
    format!("{i:08}")
}

/// A store under the target directory (a real disk: fsync is not free there).
fn store(durability: Durability, tokens: usize, cache: usize) -> (tempfile::TempDir, Store) {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("dir");
    let cfg = StoreConfig {
        master_key: MasterKeySource::Bytes(Zeroizing::new([3; 32])),
        durability,
        cache_capacity: cache,
        ..StoreConfig::in_dir(dir.path())
    };
    let s = Store::open(cfg.clone()).expect("open");
    for chunk in (0..tokens).collect::<Vec<_>>().chunks(100_000) {
        let batch = chunk.iter().map(|&i| token(serial(i))).collect();
        s.import_tokens(batch, &actor()).expect("import");
    }
    // Closing checkpoints the import out of the WAL, so the measurement does not pay for it.
    drop(s);
    (dir, Store::open(cfg).expect("reopen"))
}

struct Load {
    store: Store,
    key: OtpKey,
    counters: Vec<AtomicU64>,
}

/// `tasks` concurrent tasks each verify `per_task` codes, task `t` on tokens `t`, `t + tasks`, ...
/// within the first `working_set` serials. Every verify must be accepted.
async fn round(load: Arc<Load>, tasks: usize, per_task: usize, working_set: usize) {
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let load = load.clone();
        handles.push(tokio::spawn(async move {
            let mine: Vec<usize> = (t..working_set).step_by(tasks).collect();
            let a = actor();
            for k in 0..per_task {
                let Some(&i) = mine.get(k % mine.len().max(1)) else {
                    return;
                };
                let Some(counter) = load.counters.get(i) else {
                    return;
                };
                let c = counter.fetch_add(1, Ordering::Relaxed);
                let code = okey_otp::hotp(&load.key, c, Digits::SIX).to_text();
                let s = serial(i);
                let o = load
                    .store
                    .verify(VerifyRequest {
                        subject: Subject::Serial(&s),
                        passcode: &code,
                        now: 1,
                        actor: &a,
                        client: "bench",
                    })
                    .await
                    .expect("verify");
                assert!(o.accepted, "{s} at {c}: {o:?}");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn load(store: Store, tokens: usize) -> Arc<Load> {
    Arc::new(Load {
        store,
        key: OtpKey::new(okey_otp::Algorithm::Sha1, SEED).expect("key"),
        counters: (0..tokens).map(|_| AtomicU64::new(0)).collect(),
    })
}

fn durable_commits(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("durable_commits");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(8));
    let tasks: usize = std::env::var("OKEY_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    for (name, durability, per_task) in [
        ("group_commit", Durability::GroupCommit, 16),
        ("per_commit", Durability::PerCommit, 1),
    ] {
        let tokens = 4 * tasks;
        // Built on first use, so a filtered-out benchmark costs nothing.
        let mut l: Option<(tempfile::TempDir, Arc<Load>)> = None;
        g.throughput(Throughput::Elements((tasks * per_task) as u64));
        g.bench_function(name, |b| {
            let (_, l) = l.get_or_insert_with(|| {
                // Room to spare: the cache is split in shards, each with its share of the capacity.
                let (dir, s) = store(durability, tokens, 2 * tokens);
                (dir, load(s, tokens))
            });
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(round(l.clone(), tasks, per_task, tokens));
                }
                start.elapsed()
            })
        });
        if let Some((_, l)) = &l {
            let st = l.store.stats();
            eprintln!(
                "{name}: {} commits in {} transactions (mean batch {:.1})",
                st.commits,
                st.batches,
                st.commits as f64 / st.batches.max(1) as f64
            );
        }
    }
    g.finish();
}

fn verify_by_store_size(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("verify");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(6));
    let (tasks, per_task, working_set) = (250, 16, 1000);
    g.throughput(Throughput::Elements((tasks * per_task) as u64));
    for stored in [1_000usize, 1_000_000] {
        let mut l: Option<(tempfile::TempDir, Arc<Load>)> = None;
        let mut build = || {
            let started = Instant::now();
            let (dir, s) = store(Durability::GroupCommit, stored, 10_000);
            eprintln!("store of {stored} tokens built in {:?}", started.elapsed());
            (dir, load(s, working_set))
        };
        g.bench_function(format!("cached/{stored}"), |b| {
            let (_, l) = l.get_or_insert_with(&mut build);
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(round(l.clone(), tasks, per_task, working_set));
                }
                start.elapsed()
            })
        });
        g.bench_function(format!("uncached/{stored}"), |b| {
            let (_, l) = l.get_or_insert_with(&mut build);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    l.store.clear_cache();
                    let start = Instant::now();
                    rt.block_on(round(l.clone(), tasks, per_task, working_set));
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, durable_commits, verify_by_store_size);
criterion_main!(benches);

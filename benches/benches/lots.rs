//! Listing one lot of 500 keys (what a lot manager's "manage keys" screen reads), beside the
//! baseline of listing all 600 tokens of the store without their custody, in the same run. Target: a
//! lot of 500 keys listed in under 50 ms.
//!
//! Run: `cargo bench -p okey-benches --bench lots`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use okey_domain::Party;
use okey_store::{
    Acting, Actor, Algorithm, KeyChange, LotRow, MasterKeySource, NewToken, OtpKind, Store,
    StoreConfig, TokenFilter, TokenKind, TokenStatus, Zeroizing,
};

/// Keys in the store: 500 in the lot measured, 100 in another, 50 in the baseline's lot.
const KEYS: usize = 650;
const NOW: u64 = 1_800_000_000;

fn store(dir: &std::path::Path) -> Store {
    let s = Store::open(StoreConfig {
        master_key: MasterKeySource::Bytes(Zeroizing::new([7; 32])),
        ..StoreConfig::in_dir(dir)
    })
    .expect("store");
    let admin = Actor::new("bench", "admin");
    let tokens = (0..KEYS)
        .map(|i| NewToken {
            valid_until: None,
            serial: format!("K{i:05}"),
            kind: TokenKind::Hardware,
            otp: OtpKind::Hotp,
            algorithm: Algorithm::Sha1,
            digits: 6,
            seed: Zeroizing::new(b"12345678901234567890".to_vec()),
            counter: 0,
            drift: 0,
            status: TokenStatus::Active,
            holder: None,
            description: None,
        })
        .collect();
    s.import_tokens(tokens, &admin).expect("import");
    for (id, kind) in [("2D-9740001A", "2d"), ("OTHER", "1d"), ("SMALL", "1d")] {
        s.create_lot(
            LotRow {
                id: id.into(),
                kind: kind.parse().expect("kind"),
                unit: id.into(),
                name: id.into(),
                validity_days: Some(365),
                created_at: NOW,
            },
            &admin,
        )
        .expect("lot");
    }
    let support = Acting {
        actor: admin,
        person: Some("p.support".into()),
        central: vec![Party::SupportCentre],
        manages: vec![],
    };
    // 500 keys in the lot measured, half of them handed over; the other lot has keys too.
    let changes = (0..KEYS)
        .map(|i| {
            (
                format!("K{i:05}"),
                KeyChange::Register {
                    lot: if i >= 600 {
                        "SMALL"
                    } else if i % 6 == 5 {
                        "OTHER"
                    } else {
                        "2D-9740001A"
                    }
                    .into(),
                    valid_until: None,
                },
            )
        })
        .collect();
    s.change_keys(changes, &support, NOW).expect("register");
    let handovers = (0..KEYS)
        .step_by(2)
        .map(|i| {
            (
                format!("K{i:05}"),
                KeyChange::HandOver {
                    to: format!("person{i}"),
                    place: None,
                    until: None,
                },
            )
        })
        .collect();
    s.change_keys(handovers, &support, NOW).expect("hand over");
    s
}

fn lot_listing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("dir");
    let s = store(dir.path());
    let n = s.lot_keys("2D-9740001A").expect("keys").len();
    assert_eq!(n, 500);
    assert_eq!(s.lot_keys("SMALL").expect("keys").len(), 50);
    let mut g = c.benchmark_group("lot_listing");
    // The baseline, in the same run: a lot of 50 keys listed the same way.
    g.bench_function("baseline_lot_keys_50", |b| {
        b.iter(|| black_box(s.lot_keys(black_box("SMALL")).expect("keys")))
    });
    g.bench_function("lot_keys_500", |b| {
        b.iter(|| black_box(s.lot_keys(black_box("2D-9740001A")).expect("keys")))
    });
    g.bench_function("lot_summary_with_counts", |b| {
        b.iter(|| black_box(s.lot(black_box("2D-9740001A")).expect("lot")))
    });
    g.bench_function("baseline_list_tokens_650", |b| {
        b.iter(|| {
            black_box(
                s.list_tokens(&TokenFilter::default(), None, KEYS as u32)
                    .expect("tokens"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, lot_listing);
criterion_main!(benches);

//! Time to initialise one simulated token, and batch throughput (tokens per minute), with the
//! full driver path (busy polling, CRCs, retries) against okey-token-sim. Criterion measures
//! host CPU time; the simulator's virtual clock also gives the time the same exchanges would
//! take on hardware with the fact sheet's host delays, printed once per run.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use okey_hid::bench::{
    self, BatchOptions, InitOptions, InitRequest, IssuedSeed, OtpKind, Registry, RegistryError,
    TokenIdentity,
};
use okey_hid::nitrokey::Slot;
use okey_hid::secret::{AccessCode, Digits, OtpCode, OtpSecret, Pin};
use okey_hid::transport::DeviceProvider;
use okey_hid::yubikey::YkSlot;
use okey_token_sim::{NitrokeyProfile, SimBench, YubiKeyProfile};

fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = usize::from(h[19] & 0x0F);
    let w = u32::from_be_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]]) & 0x7FFF_FFFF;
    w % 10u32.pow(digits)
}

/// A registry that issues seeds and checks the confirmation code (HOTP, counter 0).
#[derive(Default)]
struct BenchRegistry {
    seeds: HashMap<TokenIdentity, Vec<u8>>,
}

impl Registry for BenchRegistry {
    fn begin_init(&mut self, r: &InitRequest) -> Result<IssuedSeed, RegistryError> {
        let seed: Vec<u8> = (0..20u8).map(|i| i ^ r.token.serial as u8).collect();
        self.seeds.insert(r.token, seed.clone());
        Ok(IssuedSeed {
            secret: OtpSecret::new(seed).map_err(|e| RegistryError::Refused(e.to_string()))?,
            kind: r.kind,
            digits: r.digits,
            initial_counter: 0,
        })
    }
    fn confirm_init(
        &mut self,
        t: &TokenIdentity,
        c: &OtpCode,
        _: u64,
    ) -> Result<(), RegistryError> {
        let seed = self
            .seeds
            .get(t)
            .ok_or(RegistryError::Refused("unknown".into()))?;
        if hotp(seed, 0, 6) == c.expose_value() {
            Ok(())
        } else {
            Err(RegistryError::Refused("code".into()))
        }
    }
    fn abort_init(&mut self, _: &TokenIdentity, _: &str) -> Result<(), RegistryError> {
        Ok(())
    }
    fn hotp_counter(&mut self, _: &TokenIdentity) -> Result<u64, RegistryError> {
        Err(RegistryError::Refused("not used".into()))
    }
    fn resync_hotp(
        &mut self,
        _: &TokenIdentity,
        _: &OtpCode,
        _: &OtpCode,
    ) -> Result<u64, RegistryError> {
        Err(RegistryError::Refused("not used".into()))
    }
    fn record_drift(
        &mut self,
        _: &TokenIdentity,
        _: &OtpCode,
        _: u64,
    ) -> Result<i64, RegistryError> {
        Err(RegistryError::Refused("not used".into()))
    }
}

fn options() -> InitOptions {
    InitOptions {
        kind: OtpKind::Hotp,
        digits: Digits::Six,
        nitrokey_slot: Slot::Hotp(0),
        slot_name: "okey".into(),
        admin_pin: Pin::new("12345678").expect("pin"),
        user_pin: None,
        yubikey_slot: YkSlot::One,
        access_code: AccessCode::none(),
        new_access_code: AccessCode::none(),
        overwrite: true,
    }
}

/// One init on a fresh simulated device; returns the virtual time it took (ms).
fn init_one(nitrokey: bool) -> u64 {
    let mut b = SimBench::new(1_700_000_000);
    let id = if nitrokey {
        b.add_nitrokey(NitrokeyProfile::new(15, 0xBEEF))
    } else {
        b.add_yubikey(YubiKeyProfile::new((5, 4, 3), 4242))
    };
    b.plug(id);
    let info = b.enumerate().expect("enumerate").remove(0);
    let mut touch = b.touch_handle();
    let mut reg = BenchRegistry::default();
    let start = b.clock().now_ms();
    let now = b.host_time();
    bench::init(&mut b, &info, &mut reg, &mut touch, &options(), now).expect("init");
    b.clock().now_ms() - start
}

/// A batch of `n` tokens (alternating families); returns the virtual time (ms).
fn batch(n: u32) -> u64 {
    let mut b = SimBench::new(1_700_000_000);
    let row: Vec<_> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                b.add_nitrokey(NitrokeyProfile::new(15, 0x1000 + i))
            } else {
                b.add_yubikey(YubiKeyProfile::new((5, 4, 3), 10_000 + i))
            }
        })
        .collect();
    b.set_row(row);
    let mut touch = b.touch_handle();
    let mut clock = b.host_clock();
    let mut reg = BenchRegistry::default();
    let opts = BatchOptions {
        init: options(),
        limit: None,
        idle_timeout: Duration::from_secs(5),
        removal_timeout: Duration::from_secs(30),
    };
    let summary = bench::run_batch(&mut b, &mut reg, &mut touch, &mut clock, &opts, &mut |_| {})
        .expect("batch");
    assert_eq!(summary.initialised.len(), n as usize);
    b.clock().now_ms()
}

fn benches(c: &mut Criterion) {
    let nk_ms = init_one(true);
    let yk_ms = init_one(false);
    let batch_ms = batch(20);
    eprintln!(
        "modelled device time (host delays of the fact sheet, no technician): \
         Nitrokey init {nk_ms} ms, YubiKey init {yk_ms} ms; batch of 20 incl. 5 s plug/unplug \
         per token: {batch_ms} ms = {:.1} tokens/min",
        20.0 * 60_000.0 / batch_ms as f64
    );
    let mut g = c.benchmark_group("hid_init");
    g.sample_size(20);
    g.bench_function("nitrokey_hotp_init_simulated", |b| {
        b.iter(|| black_box(init_one(true)))
    });
    g.bench_function("yubikey_hotp_init_simulated", |b| {
        b.iter(|| black_box(init_one(false)))
    });
    g.bench_function("batch_20_tokens_simulated", |b| {
        b.iter(|| black_box(batch(20)))
    });
    g.finish();
}

criterion_group!(hid, benches);
criterion_main!(hid);

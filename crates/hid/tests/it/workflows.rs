//! Bench workflows end to end against the simulated bench and the in-memory registry: the
//! server accepts the next code the simulated token shows after `init`; failures leave no
//! half-initialised token; PIN, resync, list and batch behave as a technician expects.

use std::time::Duration;

use okey_hid::bench::{
    self, BatchEvent, BatchOptions, BenchError, InitOptions, InitStage, OtpKind, PinAction,
    ResyncOptions, ResyncOutcome, SlotRef, TokenIdentity,
};
use okey_hid::nitrokey::{CommandStatus, NitrokeyError, Slot, TimeMode};
use okey_hid::secret::{AccessCode, Digits};
use okey_hid::transport::{DeviceProvider, Family};
use okey_hid::yubikey::YkSlot;
use okey_token_sim::device::Firmware;
use okey_token_sim::{Fault, NitrokeyProfile, SimBench, YubiKeyProfile};

use crate::common::*;

fn options(kind: OtpKind) -> InitOptions {
    InitOptions {
        kind,
        digits: Digits::Six,
        nitrokey_slot: match kind {
            OtpKind::Hotp => Slot::Hotp(0),
            OtpKind::Totp { .. } => Slot::Totp(0),
        },
        slot_name: "okey".into(),
        admin_pin: pin("12345678"),
        user_pin: None,
        yubikey_slot: YkSlot::One,
        access_code: AccessCode::none(),
        new_access_code: AccessCode::parse_hex("0a0b0c0d0e0f").expect("ac"),
        overwrite: false,
    }
}

fn nk_identity(minor: u8) -> TokenIdentity {
    TokenIdentity {
        family: Family::NitrokeyPro,
        serial: 0x00A1_B200 + u32::from(minor),
    }
}

#[test]
fn nitrokey_hotp_init_then_the_server_accepts_the_next_device_code() {
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut touch = bench.touch_handle();
        let mut reg = MemRegistry::new();
        reg.initial_counter = 42;
        let now = bench.host_time();
        let report = bench::init(
            &mut bench,
            &info,
            &mut reg,
            &mut touch,
            &options(OtpKind::Hotp),
            now,
        )
        .expect("init");
        let token = nk_identity(minor);
        assert_eq!(report.token, token);
        assert_eq!(report.token.to_string(), format!("NK-00A1B2{minor:02X}"));
        assert_eq!(report.device_counter, Some(43));
        assert_eq!(reg.state(&token), Some(State::Active));
        // Next login: the code the token shows now is accepted, a replay is not.
        let mut nk = open_nk(&mut bench, &info);
        let code = nk.get_code(Slot::Hotp(0), None).expect("code");
        assert!(reg.verify(&token, &code, now));
        assert!(!reg.verify(&token, &code, now));
    }
}

#[test]
fn nitrokey_totp_init_sets_the_clock_and_codes_verify() {
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut touch = bench.touch_handle();
        let mut reg = MemRegistry::new();
        let now = bench.host_time();
        let opts = options(OtpKind::Totp { step: 30 });
        let report =
            bench::init(&mut bench, &info, &mut reg, &mut touch, &opts, now).expect("init");
        assert_eq!(report.clock_set_to, Some(now));
        bench.advance(Duration::from_secs(300));
        let mut nk = open_nk(&mut bench, &info);
        let code = nk.get_code(Slot::Totp(0), None).expect("code");
        assert!(reg.verify(&nk_identity(minor), &code, bench.host_time()));
    }
}

#[test]
fn yubikey_init_writes_protects_and_confirms_by_touch() {
    let (mut bench, id, info) = yk_bench((5, 4, 3));
    let mut touch = bench.touch_handle();
    let mut reg = MemRegistry::new();
    reg.initial_counter = 160;
    let now = bench.host_time();
    let report = bench::init(
        &mut bench,
        &info,
        &mut reg,
        &mut touch,
        &options(OtpKind::Hotp),
        now,
    )
    .expect("init");
    let token = TokenIdentity {
        family: Family::YubiKeyOtp,
        serial: 12_345_678,
    };
    assert_eq!(report.token, token);
    assert_eq!(token.to_string(), "YK-12345678");
    assert_eq!(report.slot, SlotRef::YubiKey(YkSlot::One));
    assert_eq!(reg.state(&token), Some(State::Active));
    let next = okey_hid::secret::OtpCode::parse(&bench.touch(id, YkSlot::One).expect("touch"))
        .expect("code");
    assert!(reg.verify(&token, &next, now));
    // The slot is now protected by the new access code.
    let mut yk = open_yk(&mut bench, &info);
    assert!(yk.delete_slot(YkSlot::One, &AccessCode::none()).is_err());
    // TOTP is refused on a YubiKey before anything is asked of the server.
    let r = bench::init(
        &mut bench,
        &info,
        &mut reg,
        &mut touch,
        &options(OtpKind::Totp { step: 30 }),
        now,
    );
    assert!(matches!(r, Err(BenchError::Unsupported { .. })));
    assert_eq!(reg.tokens[&token].seeds_released, 1);
}

#[test]
fn a_refused_confirmation_leaves_an_empty_slot_and_an_inactive_token() {
    for minor in NK_FIRMWARES {
        let (mut bench, id, info) = nk_bench(minor);
        let mut touch = bench.touch_handle();
        let mut reg = MemRegistry::new();
        reg.refuse_next_confirm = true;
        let now = bench.host_time();
        let err = bench::init(
            &mut bench,
            &info,
            &mut reg,
            &mut touch,
            &options(OtpKind::Hotp),
            now,
        )
        .expect_err("refused");
        let token = nk_identity(minor);
        match &err {
            BenchError::InitFailed { stage, cleanup, .. } => {
                assert_eq!(*stage, InitStage::Confirm);
                assert!(cleanup.slot_clear && cleanup.server_aborted, "{cleanup:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.advice().contains("Nothing was left half-done"));
        assert_eq!(reg.state(&token), Some(State::Aborted));
        let slot = bench.with_device(id, |d| match &d.firmware {
            Firmware::Nitrokey(n) => n.slot(0x10),
            Firmware::YubiKey(_) => None,
        });
        assert_eq!(slot, Some(None));
        // Retry succeeds.
        bench::init(
            &mut bench,
            &info,
            &mut reg,
            &mut touch,
            &options(OtpKind::Hotp),
            now,
        )
        .expect("retry");
        assert_eq!(reg.state(&token), Some(State::Active));
    }
}

#[test]
fn a_token_pulled_out_during_init_stays_inactive_and_can_be_redone() {
    let (mut bench, id, info) = nk_bench(15);
    let mut touch = bench.touch_handle();
    let mut reg = MemRegistry::new();
    let now = bench.host_time();
    bench.inject(id, Fault::UnplugOnCommand(0x01));
    let err = bench::init(
        &mut bench,
        &info,
        &mut reg,
        &mut touch,
        &options(OtpKind::Hotp),
        now,
    )
    .expect_err("pulled");
    assert!(err.is_disconnected());
    assert!(
        err.advice().contains("could not be erased"),
        "{}",
        err.advice()
    );
    let token = nk_identity(15);
    assert_eq!(reg.state(&token), Some(State::Aborted));
    bench.plug(id);
    bench::init(
        &mut bench,
        &info,
        &mut reg,
        &mut touch,
        &options(OtpKind::Hotp),
        now,
    )
    .expect("redo after replug");
    assert_eq!(reg.state(&token), Some(State::Active));
}

#[test]
fn a_yubikey_failure_deletes_the_written_slot() {
    let (mut bench, _, info) = yk_bench((5, 4, 3));
    let mut touch = bench.touch_handle();
    let mut reg = MemRegistry::new();
    reg.refuse_next_confirm = true;
    let now = bench.host_time();
    let err = bench::init(
        &mut bench,
        &info,
        &mut reg,
        &mut touch,
        &options(OtpKind::Hotp),
        now,
    )
    .expect_err("refused");
    assert!(
        matches!(&err, BenchError::InitFailed { cleanup, .. } if cleanup.slot_clear && cleanup.server_aborted)
    );
    let mut yk = open_yk(&mut bench, &info);
    assert!(!yk.status().expect("status").slot1_valid());
}

#[test]
fn a_used_slot_is_refused_before_the_server_is_asked() {
    let (mut bench, _, info) = nk_bench(15);
    let mut touch = bench.touch_handle();
    let mut reg = MemRegistry::new();
    let now = bench.host_time();
    let opts = options(OtpKind::Hotp);
    bench::init(&mut bench, &info, &mut reg, &mut touch, &opts, now).expect("first");
    let token = nk_identity(15);
    let r = bench::init(&mut bench, &info, &mut reg, &mut touch, &opts, now);
    assert!(matches!(r, Err(BenchError::SlotInUse { .. })));
    assert_eq!(reg.tokens[&token].seeds_released, 1);
    // A wrong admin PIN is found before the server releases anything either.
    let mut other = options(OtpKind::Hotp);
    other.nitrokey_slot = Slot::Hotp(1);
    other.admin_pin = pin("87654321");
    let r = bench::init(&mut bench, &info, &mut reg, &mut touch, &other, now);
    assert!(matches!(
        r,
        Err(BenchError::Nitrokey(NitrokeyError::Command {
            status: CommandStatus::WrongPassword,
            ..
        }))
    ));
    assert_eq!(reg.tokens[&token].seeds_released, 1);
}

#[test]
fn pin_workflow_changes_pins_and_reports_counters() {
    let (mut bench, _, info) = nk_bench(15);
    let show = bench::pin(&mut bench, &info, &PinAction::ShowCounters).expect("show");
    assert_eq!(show.before.map(|c| (c.user, c.admin)), Some((3, 3)));
    let fail = bench::pin(
        &mut bench,
        &info,
        &PinAction::ChangeUser {
            old: pin("000000"),
            new: pin("654321"),
        },
    )
    .expect_err("wrong PIN");
    assert_eq!(fail.after.map(|c| c.user), Some(2));
    assert!(fail.error.advice().contains("Wrong PIN"));
    let ok = bench::pin(
        &mut bench,
        &info,
        &PinAction::ChangeUser {
            old: pin("123456"),
            new: pin("654321"),
        },
    )
    .expect("change");
    assert_eq!(ok.before.map(|c| c.user), Some(2));
    assert_eq!(ok.after.map(|c| c.user), Some(3));
    bench::pin(
        &mut bench,
        &info,
        &PinAction::ChangeAdmin {
            old: pin("12345678"),
            new: pin("abcdefgh"),
        },
    )
    .expect("admin");
    for _ in 0..3 {
        let _ = bench::pin(
            &mut bench,
            &info,
            &PinAction::ChangeUser {
                old: pin("000000"),
                new: pin("111111"),
            },
        );
    }
    let blocked = bench::pin(&mut bench, &info, &PinAction::ShowCounters).expect("show");
    assert_eq!(blocked.before.map(|c| c.user), Some(0));
    let unlocked = bench::pin(
        &mut bench,
        &info,
        &PinAction::UnlockUser {
            admin: pin("abcdefgh"),
            new_user: pin("135792"),
        },
    )
    .expect("unlock");
    assert_eq!(unlocked.after.map(|c| c.user), Some(3));
}

#[test]
fn pin_workflow_changes_a_yubikey_access_code() {
    let (mut bench, _, info) = yk_bench((5, 4, 3));
    let mut touch = bench.touch_handle();
    let mut reg = MemRegistry::new();
    let now = bench.host_time();
    let opts = options(OtpKind::Hotp);
    bench::init(&mut bench, &info, &mut reg, &mut touch, &opts, now).expect("init");
    let new = AccessCode::parse_hex("112233445566").expect("ac");
    let wrong = bench::pin(
        &mut bench,
        &info,
        &PinAction::ChangeAccessCode {
            slot: YkSlot::One,
            current: AccessCode::none(),
            new: new.clone(),
        },
    );
    assert!(wrong.is_err());
    bench::pin(
        &mut bench,
        &info,
        &PinAction::ChangeAccessCode {
            slot: YkSlot::One,
            current: opts.new_access_code.clone(),
            new: new.clone(),
        },
    )
    .expect("change");
    let mut yk = open_yk(&mut bench, &info);
    yk.delete_slot(YkSlot::One, &new).expect("new code works");
    let r = bench::pin(
        &mut bench,
        &info,
        &PinAction::ChangeUser {
            old: pin("123456"),
            new: pin("654321"),
        },
    );
    assert!(matches!(
        r.map_err(|f| f.error),
        Err(BenchError::Unsupported { .. })
    ));
}

fn resync_opts(slot: Slot, admin: bool) -> ResyncOptions {
    ResyncOptions {
        nitrokey_slot: slot,
        yubikey_slot: YkSlot::One,
        admin_pin: admin.then(|| pin("12345678")),
        user_pin: None,
        max_step_forward: 50,
    }
}

fn init_nk(
    bench: &mut SimBench,
    info: &okey_hid::DeviceInfo,
    reg: &mut MemRegistry,
    kind: OtpKind,
) {
    let mut touch = bench.touch_handle();
    let now = bench.host_time();
    bench::init(bench, info, reg, &mut touch, &options(kind), now).expect("init");
}

#[test]
fn hotp_resync_moves_whichever_side_is_behind() {
    for (minor, admin) in [(15, true), (15, false), (7, true)] {
        let (mut bench, _, info) = nk_bench(minor);
        let mut touch = bench.touch_handle();
        let mut reg = MemRegistry::new();
        init_nk(&mut bench, &info, &mut reg, OtpKind::Hotp);
        let token = nk_identity(minor);
        let now = bench.host_time();
        let opts = resync_opts(Slot::Hotp(0), admin);
        let r = bench::resync(&mut bench, &info, &mut reg, &mut touch, &opts, now).expect("r");
        assert_eq!(r.1, ResyncOutcome::InStep { counter: 1 });
        // Device ahead: codes pressed without logging in.
        {
            let mut nk = open_nk(&mut bench, &info);
            for _ in 0..5 {
                nk.get_code(Slot::Hotp(0), None).expect("code");
            }
        }
        let r = bench::resync(&mut bench, &info, &mut reg, &mut touch, &opts, now).expect("r");
        assert_eq!(r.1, ResyncOutcome::ServerAdvanced { from: 1, to: 8 });
        // Server ahead (e.g. after logins with a software token on the same seed).
        reg.tokens.get_mut(&token).expect("token").next = 30;
        let r = bench::resync(&mut bench, &info, &mut reg, &mut touch, &opts, now).expect("r");
        assert_eq!(r.1, ResyncOutcome::DeviceAdvanced { from: 8, to: 30 });
        let mut nk = open_nk(&mut bench, &info);
        let code = nk.get_code(Slot::Hotp(0), None).expect("code");
        assert!(reg.verify(&token, &code, now), "fw 0.{minor} admin {admin}");
        // Too far behind to step without the admin PIN.
        if !admin {
            reg.tokens.get_mut(&token).expect("token").next = 500;
            let r = bench::resync(&mut bench, &info, &mut reg, &mut touch, &opts, now);
            assert!(matches!(r, Err(BenchError::InvalidArgument(_))));
        }
    }
}

#[test]
fn totp_resync_records_drift_and_sets_the_clock() {
    let (mut bench, id, info) = nk_bench(15);
    let mut touch = bench.touch_handle();
    let mut reg = MemRegistry::new();
    init_nk(&mut bench, &info, &mut reg, OtpKind::Totp { step: 30 });
    let token = nk_identity(15);
    // Two hours later the 1 %-slow device clock is 72 s behind: two or three steps.
    bench.advance(Duration::from_secs(7_200));
    let now = bench.host_time();
    let (_, outcome) = bench::resync(
        &mut bench,
        &info,
        &mut reg,
        &mut touch,
        &resync_opts(Slot::Totp(0), false),
        now,
    )
    .expect("resync");
    match outcome {
        ResyncOutcome::ClockSet {
            drift_steps,
            set_to,
        } => {
            assert!((-3..=-2).contains(&drift_steps), "{drift_steps}");
            assert_eq!(set_to, now);
        }
        other => panic!("unexpected {other:?}"),
    }
    let t = bench.clock().now_ms();
    let device = bench
        .with_device(id, |d| match &d.firmware {
            Firmware::Nitrokey(n) => n.device_time(t),
            Firmware::YubiKey(_) => 0,
        })
        .expect("device");
    assert!(device.abs_diff(bench.host_time()) <= 1);
    // The recorded drift now matches a clock that is right again only after it is reset to 0.
    reg.tokens.get_mut(&token).expect("token").drift = 0;
    let mut nk = open_nk(&mut bench, &info);
    let code = nk.get_code(Slot::Totp(0), None).expect("code");
    assert!(reg.verify(&token, &code, bench.host_time()));
    nk.set_time(TimeMode::Force, bench.host_time())
        .expect("time");
}

#[test]
fn yubikey_resync_moves_the_server_with_two_touches() {
    let (mut bench, id, info) = yk_bench((5, 4, 3));
    let mut touch = bench.touch_handle();
    let mut reg = MemRegistry::new();
    let now = bench.host_time();
    bench::init(
        &mut bench,
        &info,
        &mut reg,
        &mut touch,
        &options(OtpKind::Hotp),
        now,
    )
    .expect("init");
    for _ in 0..9 {
        bench.touch(id, YkSlot::One);
    }
    let (token, outcome) = bench::resync(
        &mut bench,
        &info,
        &mut reg,
        &mut touch,
        &resync_opts(Slot::Hotp(0), false),
        now,
    )
    .expect("resync");
    assert_eq!(outcome, ResyncOutcome::ServerAdvanced { from: 1, to: 12 });
    let code =
        okey_hid::secret::OtpCode::parse(&bench.touch(id, YkSlot::One).expect("t")).expect("code");
    assert!(reg.verify(&token, &code, now));
}

#[test]
fn list_shows_family_firmware_serial_and_used_slots() {
    let mut bench = SimBench::new(EPOCH);
    let a = bench.add_nitrokey(NitrokeyProfile::new(15, 0x1111));
    let b = bench.add_yubikey(YubiKeyProfile::new((5, 2, 7), 777));
    let c = bench.add_nitrokey(NitrokeyProfile::new(7, 0x2222));
    for id in [a, b, c] {
        bench.plug(id);
    }
    let infos = bench.enumerate().expect("enumerate");
    let mut touch = bench.touch_handle();
    let mut reg = MemRegistry::new();
    let now = bench.host_time();
    bench::init(
        &mut bench,
        &infos[0],
        &mut reg,
        &mut touch,
        &options(OtpKind::Hotp),
        now,
    )
    .expect("init");
    bench.inject(c, Fault::CorruptResponse);
    let list = bench::list(&mut bench).expect("list");
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0].token.map(|t| t.to_string()).as_deref(),
        Some("NK-00001111")
    );
    assert_eq!(list[0].firmware.as_deref(), Some("0.15"));
    assert_eq!(list[0].slots_in_use, vec![SlotRef::Nitrokey(Slot::Hotp(0))]);
    assert_eq!(list[0].retry_counters.map(|c| c.admin), Some(3));
    assert_eq!(list[1].info.family, Family::YubiKeyOtp);
    assert_eq!(list[1].token.map(|t| t.serial), Some(777));
    assert_eq!(list[1].firmware.as_deref(), Some("5.2.7"));
    assert!(list[1].slots_in_use.is_empty());
    // A corrupted answer is polled again; the device is still listed.
    assert_eq!(list[2].firmware.as_deref(), Some("0.7"));
    assert!(list.iter().all(|d| d.error.is_none()));
}

#[test]
fn batch_mode_goes_on_after_a_token_is_pulled_out() {
    let mut bench = SimBench::new(EPOCH);
    let mut row = Vec::new();
    for i in 0..4u32 {
        row.push(bench.add_nitrokey(NitrokeyProfile::new(15, 0x5000 + i)));
    }
    row.push(bench.add_yubikey(YubiKeyProfile::new((5, 4, 3), 900_001)));
    row.push(bench.add_nitrokey(NitrokeyProfile::new(8, 0x6000)));
    // The third token is pulled out while its slot is being written.
    bench.inject(row[2], Fault::UnplugOnCommand(0x01));
    bench.set_row(row.clone());
    let mut touch = bench.touch_handle();
    let mut clock = bench.host_clock();
    let mut reg = MemRegistry::new();
    let opts = BatchOptions {
        init: options(OtpKind::Hotp),
        limit: None,
        idle_timeout: Duration::from_secs(30),
        removal_timeout: Duration::from_secs(60),
    };
    let mut events = Vec::new();
    let summary = bench::run_batch(
        &mut bench,
        &mut reg,
        &mut touch,
        &mut clock,
        &opts,
        &mut |e| {
            events.push(match e {
                BatchEvent::WaitingForToken { .. } => "wait",
                BatchEvent::Plugged(_) => "plug",
                BatchEvent::Initialised(_) => "ok",
                BatchEvent::Failed { .. } => "fail",
                BatchEvent::WaitingForRemoval(_) => "remove?",
                BatchEvent::Removed(_) => "removed",
            });
        },
    )
    .expect("batch");
    assert_eq!(summary.initialised.len(), 5);
    assert_eq!(summary.failed.len(), 1);
    let failed = &summary.failed[0];
    assert!(failed.pulled_out);
    assert_eq!(failed.token.map(|t| t.serial), Some(0x5002));
    assert_eq!(events.iter().filter(|e| **e == "plug").count(), 6);
    assert_eq!(events.iter().filter(|e| **e == "removed").count(), 6);
    let active = reg
        .tokens
        .values()
        .filter(|t| t.state == State::Active)
        .count();
    assert_eq!(active, 5);
}

//! YubiKey OTP driver against the simulated key: status, serial, OATH-HOTP configuration,
//! access codes, delete, swap, version limits. Codes come out by (emulated) touch and are
//! checked against an independent HOTP computation.

use okey_hid::secret::{AccessCode, Digits, OtpSecret};
use okey_hid::yubikey::proto::{ext, tkt};
use okey_hid::yubikey::{HotpConfig, IdEncoding, YkSlot, YubiKeyError};
use okey_token_sim::device::Firmware;

use crate::common::*;

fn cfg<'a>(s: &'a OtpSecret, digits: Digits, imf: u32, new: &'a AccessCode) -> HotpConfig<'a> {
    HotpConfig {
        secret: s,
        digits,
        imf,
        token_id: &[],
        id_encoding: IdEncoding::None,
        append_cr: true,
        ext_flags: ext::SERIAL_API_VISIBLE | ext::ALLOW_UPDATE | ext::FAST_TRIG,
        new_access_code: new,
    }
}

fn code(b: &okey_token_sim::SimBench, id: okey_token_sim::DeviceId, slot: YkSlot) -> String {
    b.touch(id, slot).expect("HOTP slot types a code")
}

fn ac(hex: &str) -> AccessCode {
    AccessCode::parse_hex(hex).expect("access code")
}

#[test]
fn status_and_serial() {
    let (mut bench, _, info) = yk_bench((5, 4, 3));
    let mut yk = open_yk(&mut bench, &info);
    let st = yk.status().expect("status");
    assert_eq!(st.version.to_string(), "5.4.3");
    assert_eq!(st.pgm_seq, 0);
    assert!(!st.slot1_valid() && !st.slot2_valid());
    assert_eq!(yk.serial(), Ok(12_345_678));
    // Response mode was left: a status read works again.
    assert_eq!(yk.status().expect("status").flags, 0);
}

#[test]
fn hotp_slot_types_rfc_codes_on_touch() {
    let (mut bench, id, info) = yk_bench((5, 4, 3));
    let mut yk = open_yk(&mut bench, &info);
    let s = OtpSecret::from_slice(RFC_SECRET).expect("secret");
    yk.program_hotp(
        YkSlot::One,
        &cfg(&s, Digits::Six, 0, &AccessCode::none()),
        &AccessCode::none(),
    )
    .expect("program");
    let st = yk.status().expect("status");
    assert_eq!(st.pgm_seq, 1);
    assert!(st.slot1_valid() && !st.slot2_valid());
    assert_eq!(code(&bench, id, YkSlot::One), "755224");
    assert_eq!(code(&bench, id, YkSlot::One), "287082");
    assert_eq!(bench.touch(id, YkSlot::Two), None);
}

#[test]
fn eight_digits_and_initial_moving_factor() {
    let (mut bench, id, info) = yk_bench((4, 3, 7));
    let mut yk = open_yk(&mut bench, &info);
    let key: Vec<u8> = (1u8..=20).collect();
    let s = OtpSecret::from_slice(&key).expect("secret");
    yk.program_hotp(
        YkSlot::Two,
        &cfg(&s, Digits::Eight, 4096, &AccessCode::none()),
        &AccessCode::none(),
    )
    .expect("program");
    for c in 4096..4099u64 {
        assert_eq!(
            code(&bench, id, YkSlot::Two),
            format!("{:08}", hotp(&key, c, 8))
        );
    }
    // A short key is zero-padded, which HMAC treats identically.
    let short = OtpSecret::from_slice(&key[..10]).expect("secret");
    yk.program_hotp(
        YkSlot::One,
        &cfg(&short, Digits::Six, 0, &AccessCode::none()),
        &AccessCode::none(),
    )
    .expect("program");
    assert_eq!(
        code(&bench, id, YkSlot::One),
        format!("{:06}", hotp(&key[..10], 0, 6))
    );
    // Not a multiple of 16, too long: refused before anything is sent.
    let pgm = yk.status().expect("status").pgm_seq;
    assert!(matches!(
        yk.program_hotp(
            YkSlot::One,
            &cfg(&s, Digits::Six, 17, &AccessCode::none()),
            &AccessCode::none()
        ),
        Err(YubiKeyError::Config(_))
    ));
    let long = OtpSecret::from_slice(&[1; 21]).expect("secret");
    assert!(matches!(
        yk.program_hotp(
            YkSlot::One,
            &cfg(&long, Digits::Six, 0, &AccessCode::none()),
            &AccessCode::none()
        ),
        Err(YubiKeyError::Config(_))
    ));
    assert_eq!(yk.status().expect("status").pgm_seq, pgm);
}

#[test]
fn access_code_protects_changes_and_deletion() {
    let (mut bench, id, info) = yk_bench((5, 4, 3));
    let mut yk = open_yk(&mut bench, &info);
    let s = OtpSecret::from_slice(RFC_SECRET).expect("secret");
    let a = ac("010203040506");
    let b = ac("a1a2a3a4a5a6");
    yk.program_hotp(
        YkSlot::One,
        &cfg(&s, Digits::Six, 0, &a),
        &AccessCode::none(),
    )
    .expect("protect with A");
    // Without / with a wrong access code the key silently refuses (pgmSeq unchanged).
    let r = yk.program_hotp(
        YkSlot::One,
        &cfg(&s, Digits::Six, 0, &a),
        &AccessCode::none(),
    );
    assert!(matches!(r, Err(YubiKeyError::Rejected(_))));
    let r = yk.delete_slot(YkSlot::One, &b);
    assert!(matches!(r, Err(YubiKeyError::Rejected(_))));
    assert_eq!(yk.status().expect("status").pgm_seq, 1);
    // Change A -> B by UPDATE: the secret and counter stay.
    assert_eq!(code(&bench, id, YkSlot::One), "755224");
    yk.change_access_code(YkSlot::One, (0x34, tkt::APPEND_CR, 0), &a, &b)
        .expect("change");
    assert_eq!(code(&bench, id, YkSlot::One), "287082");
    assert!(matches!(
        yk.change_access_code(YkSlot::One, (0x34, tkt::APPEND_CR, 0), &a, &a),
        Err(YubiKeyError::Rejected(_))
    ));
    // The other slot is unprotected.
    yk.program_hotp(
        YkSlot::Two,
        &cfg(&s, Digits::Six, 0, &AccessCode::none()),
        &AccessCode::none(),
    )
    .expect("slot 2");
    assert_eq!(yk.status().expect("status").pgm_seq, 3);
    yk.delete_slot(YkSlot::Two, &AccessCode::none())
        .expect("delete 2");
    assert_eq!(yk.status().expect("status").pgm_seq, 4);
    // Deleting the last configuration brings pgmSeq back to 0, which the driver accepts.
    yk.delete_slot(YkSlot::One, &b).expect("delete 1 with B");
    let st = yk.status().expect("status");
    assert_eq!((st.pgm_seq, st.slot1_valid()), (0, false));
}

#[test]
fn swap_exchanges_the_configurations() {
    let (mut bench, id, info) = yk_bench((3, 4, 0));
    let mut yk = open_yk(&mut bench, &info);
    let s = OtpSecret::from_slice(RFC_SECRET).expect("secret");
    yk.program_hotp(
        YkSlot::One,
        &cfg(&s, Digits::Six, 0, &AccessCode::none()),
        &AccessCode::none(),
    )
    .expect("program");
    yk.swap_slots().expect("swap");
    let st = yk.status().expect("status");
    assert!(!st.slot1_valid() && st.slot2_valid());
    assert_eq!(bench.touch(id, YkSlot::One), None);
    assert_eq!(code(&bench, id, YkSlot::Two), "755224");
    let _ = bench.with_device(id, |d| matches!(d.firmware, Firmware::YubiKey(_)));
}

#[test]
fn firmware_version_limits() {
    let s = OtpSecret::from_slice(RFC_SECRET).expect("secret");
    let none = AccessCode::none();
    // 2.0: no OATH-HOTP, no serial, no swap.
    let (mut bench, _, info) = yk_bench((2, 0, 2));
    let mut yk = open_yk(&mut bench, &info);
    assert!(matches!(
        yk.program_hotp(YkSlot::One, &cfg(&s, Digits::Six, 0, &none), &none),
        Err(YubiKeyError::Unsupported { .. })
    ));
    assert!(matches!(yk.serial(), Err(YubiKeyError::Unsupported { .. })));
    assert!(matches!(
        yk.swap_slots(),
        Err(YubiKeyError::Unsupported { .. })
    ));
    // 2.1: HOTP but no initial moving factor.
    let (mut bench, _, info) = yk_bench((2, 1, 0));
    let mut yk = open_yk(&mut bench, &info);
    assert!(matches!(
        yk.program_hotp(YkSlot::One, &cfg(&s, Digits::Six, 16, &none), &none),
        Err(YubiKeyError::Unsupported { .. })
    ));
    yk.program_hotp(YkSlot::One, &cfg(&s, Digits::Six, 0, &none), &none)
        .expect("IMF 0 works");
    // 4.3.2 to 4.3.5: no access-code change by UPDATE.
    let (mut bench, _, info) = yk_bench((4, 3, 4));
    let mut yk = open_yk(&mut bench, &info);
    yk.program_hotp(YkSlot::One, &cfg(&s, Digits::Six, 0, &none), &none)
        .expect("program");
    assert!(matches!(
        yk.change_access_code(YkSlot::One, (0x34, 0x20, 0), &none, &ac("010101010101")),
        Err(YubiKeyError::Unsupported { .. })
    ));
}

//! Fault injection: each fault gives a clear error or is absorbed by the driver's retry rules,
//! never leaves half a state on the device, and a retry succeeds.

use okey_hid::nitrokey::{CommandStatus, NitrokeyError, Slot, SlotConfig, SlotWrite};
use okey_hid::secret::{AccessCode, Digits, OtpSecret};
use okey_hid::transport::{DeviceProvider, TransportError};
use okey_hid::yubikey::proto::ext;
use okey_hid::yubikey::{HotpConfig, IdEncoding, YkSlot, YubiKeyError};
use okey_token_sim::Fault;
use okey_token_sim::device::Firmware;

use crate::common::*;

fn nk_counter(bench: &okey_token_sim::SimBench, id: okey_token_sim::DeviceId) -> Option<u64> {
    bench
        .with_device(id, |d| match &d.firmware {
            Firmware::Nitrokey(n) => n.slot(0x10).map(|s| s.counter_or_step),
            Firmware::YubiKey(_) => None,
        })
        .flatten()
}

fn programmed_nk() -> (
    okey_token_sim::SimBench,
    okey_token_sim::DeviceId,
    okey_hid::DeviceInfo,
) {
    let (mut bench, id, info) = nk_bench(15);
    let mut nk = open_nk(&mut bench, &info);
    let s = OtpSecret::from_slice(RFC_SECRET).expect("secret");
    nk.admin(&pin("12345678"))
        .expect("admin")
        .write_slot(
            Slot::Hotp(0),
            &SlotWrite {
                name: "f",
                secret: &s,
                counter_or_step: 0,
                config: SlotConfig::default(),
                token_id: [0; 13],
            },
        )
        .expect("write");
    (bench, id, info)
}

#[test]
fn corrupted_request_is_rejected_by_crc_and_resent_once_executed() {
    let (mut bench, id, info) = programmed_nk();
    let mut nk = open_nk(&mut bench, &info);
    bench.inject(id, Fault::CorruptRequest);
    let c = nk.get_code(Slot::Hotp(0), None).expect("code after resend");
    assert_eq!(c.expose_value(), 755_224);
    // Executed exactly once: the corrupted copy did nothing.
    assert_eq!(nk_counter(&bench, id), Some(1));
    assert_eq!(bench.with_device(id, |d| d.pending_faults()), Some(0));
}

#[test]
fn corrupted_response_is_read_again_not_re_executed() {
    let (mut bench, id, info) = programmed_nk();
    let mut nk = open_nk(&mut bench, &info);
    // get_code reads GET_STATUS first; corrupt the GET_CODE answer (2nd GET_REPORT).
    bench.inject(id, Fault::CorruptResponseAfter(1));
    let c = nk.get_code(Slot::Hotp(0), None).expect("code");
    assert_eq!(c.expose_value(), 755_224);
    assert_eq!(nk_counter(&bench, id), Some(1));
}

#[test]
fn dropped_request_is_detected_as_stale_and_resent() {
    let (mut bench, id, info) = programmed_nk();
    let mut nk = open_nk(&mut bench, &info);
    bench.inject(id, Fault::DropRequest);
    // The status read of get_code is dropped; the device still shows the last answer.
    let c = nk.get_code(Slot::Hotp(0), None).expect("code");
    assert_eq!(c.expose_value(), 755_224);
    bench.inject(id, Fault::DropRequest);
    bench.inject(id, Fault::DropRequest);
    bench.inject(id, Fault::DropRequest);
    let e = nk.user_retry_count().expect_err("dropped every time");
    assert!(
        matches!(e, NitrokeyError::NotAccepted { attempts: 3, .. }),
        "{e:?}"
    );
    assert_eq!(nk.user_retry_count(), Ok(3));
    assert_eq!(nk_counter(&bench, id), Some(1));
}

#[test]
fn busy_device_is_polled_through() {
    let (mut bench, id, info) = programmed_nk();
    let mut nk = open_nk(&mut bench, &info);
    let before = bench.clock().now_ms();
    bench.inject(id, Fault::Busy(40));
    assert_eq!(nk.status().expect("status").firmware.minor, 15);
    // 40 busy answers: runs of 10 do not count as polls; pauses doubled up to 300 ms.
    assert!(bench.clock().now_ms() - before > 4_000);
}

#[test]
fn device_busy_beyond_the_budget_fails_then_recovers() {
    let (mut bench, id, info) = programmed_nk();
    let mut nk = open_nk(&mut bench, &info);
    bench.inject(id, Fault::Busy(200));
    let e = nk.user_retry_count().expect_err("too busy");
    assert!(matches!(e, NitrokeyError::NoResponse { .. }), "{e:?}");
    // The next command is dropped while the device finishes, then resent.
    assert_eq!(nk.admin_retry_count(), Ok(3));
    assert_eq!(nk.status().expect("status").firmware.minor, 15);
}

#[test]
fn persistent_corruption_is_a_malformed_error_then_retry_works() {
    let (mut bench, id, info) = programmed_nk();
    let mut nk = open_nk(&mut bench, &info);
    for _ in 0..15 {
        bench.inject(id, Fault::CorruptResponse);
    }
    let e = nk.status().expect_err("every answer corrupted");
    assert!(matches!(e, NitrokeyError::Malformed { .. }), "{e:?}");
    assert!(nk.status().is_ok());
}

#[test]
fn unplug_during_slot_write_leaves_no_half_written_slot() {
    // SEND_OTP_DATA secret chunk (0x17) and the WRITE_TO_SLOT commit (0x01).
    for command in [0x17u8, 0x01] {
        let (mut bench, id, info) = nk_bench(15);
        let s = OtpSecret::from_slice(RFC_SECRET).expect("secret");
        let write = SlotWrite {
            name: "u",
            secret: &s,
            counter_or_step: 0,
            config: SlotConfig::default(),
            token_id: [0; 13],
        };
        let mut nk = open_nk(&mut bench, &info);
        bench.inject(id, Fault::UnplugOnCommand(command));
        let e = nk
            .admin(&pin("12345678"))
            .and_then(|mut a| a.write_slot(Slot::Hotp(0), &write))
            .expect_err("unplugged");
        assert_eq!(e, NitrokeyError::Transport(TransportError::Disconnected));
        // The old handle stays dead even after the device is back.
        bench.unplug(id);
        bench.plug(id);
        assert!(nk.status().expect_err("stale handle").is_disconnected());
        let mut nk = open_nk(&mut bench, &info);
        let e = nk.read_slot(Slot::Hotp(0)).expect_err("nothing written");
        assert_eq!(e.command_status(), Some(CommandStatus::SlotNotProgrammed));
        // Retry on the fresh handle succeeds.
        nk.admin(&pin("12345678"))
            .expect("admin")
            .write_slot(Slot::Hotp(0), &write)
            .expect("retry");
        assert_eq!(
            nk.get_code(Slot::Hotp(0), None)
                .expect("code")
                .expose_value(),
            755_224
        );
    }
}

fn yk_cfg<'a>(s: &'a OtpSecret, none: &'a AccessCode) -> HotpConfig<'a> {
    HotpConfig {
        secret: s,
        digits: Digits::Six,
        imf: 0,
        token_id: &[],
        id_encoding: IdEncoding::None,
        append_cr: true,
        ext_flags: ext::SERIAL_API_VISIBLE | ext::ALLOW_UPDATE,
        new_access_code: none,
    }
}

#[test]
fn yubikey_unplugged_mid_frame_keeps_its_old_state() {
    let (mut bench, id, info) = yk_bench((5, 4, 3));
    let mut yk = open_yk(&mut bench, &info);
    let s = OtpSecret::from_slice(RFC_SECRET).expect("secret");
    let none = AccessCode::none();
    bench.inject(id, Fault::UnplugAfterWrites(4));
    let e = yk
        .program_hotp(YkSlot::One, &yk_cfg(&s, &none), &none)
        .expect_err("unplugged");
    assert!(e.is_disconnected());
    bench.unplug(id);
    bench.plug(id);
    let mut yk = open_yk(&mut bench, &info);
    let st = yk.status().expect("status");
    assert_eq!((st.pgm_seq, st.slot1_valid()), (0, false));
    yk.program_hotp(YkSlot::One, &yk_cfg(&s, &none), &none)
        .expect("retry");
    assert_eq!(bench.touch(id, YkSlot::One).as_deref(), Some("755224"));
}

#[test]
fn yubikey_corrupted_chunk_is_silently_rejected_then_retry_works() {
    let (mut bench, id, info) = yk_bench((5, 4, 3));
    let mut yk = open_yk(&mut bench, &info);
    let s = OtpSecret::from_slice(RFC_SECRET).expect("secret");
    let none = AccessCode::none();
    bench.inject(id, Fault::CorruptRequest);
    let e = yk
        .program_hotp(YkSlot::One, &yk_cfg(&s, &none), &none)
        .expect_err("frame CRC wrong");
    assert!(matches!(e, YubiKeyError::Rejected(_)));
    assert!(!yk.status().expect("status").slot1_valid());
    yk.program_hotp(YkSlot::One, &yk_cfg(&s, &none), &none)
        .expect("retry");
}

#[test]
fn yubikey_corrupted_response_fails_its_crc_then_retry_works() {
    let (mut bench, id, info) = yk_bench((5, 4, 3));
    let mut yk = open_yk(&mut bench, &info);
    // Serial read: status, chunk 0, status, chunk 9, then the response chunk (3rd GET), with
    // the default profile's two busy reads in between.
    bench.inject(id, Fault::CorruptResponseAfter(4));
    let e = yk.serial().expect_err("corrupted");
    assert!(matches!(e, YubiKeyError::Malformed(_)), "{e:?}");
    assert_eq!(yk.serial(), Ok(12_345_678));
}

#[test]
fn yubikey_busy_write_flag_is_waited_out_or_reported() {
    let (mut bench, id, info) = yk_bench((5, 4, 3));
    let mut yk = open_yk(&mut bench, &info);
    let s = OtpSecret::from_slice(RFC_SECRET).expect("secret");
    let none = AccessCode::none();
    bench.inject(id, Fault::Busy(6));
    yk.program_hotp(YkSlot::One, &yk_cfg(&s, &none), &none)
        .expect("waited");
    bench.inject(id, Fault::Busy(40));
    let e = yk
        .program_hotp(YkSlot::Two, &yk_cfg(&s, &none), &none)
        .expect_err("too busy");
    assert!(matches!(e, YubiKeyError::Busy(_)), "{e:?}");
    // Drain the busy period, then the whole frame is sent again from chunk 0.
    for _ in 0..40 {
        let _ = bench
            .open(&info)
            .map(|mut t| t.get_feature_report(&mut [0u8; 8], std::time::Duration::ZERO));
    }
    yk.program_hotp(YkSlot::Two, &yk_cfg(&s, &none), &none)
        .expect("retry");
    let st = yk.status().expect("status");
    assert!(st.slot1_valid() && st.slot2_valid());
}

//! Nitrokey Pro driver against the simulated firmware, every command on every firmware
//! generation; codes checked against an independent HOTP computation and RFC vectors.

use okey_hid::nitrokey::proto::{self, CommandStatus, TimeMode};
use okey_hid::nitrokey::{GeneralConfig, NitrokeyError, Slot, SlotConfig, SlotWrite};
use okey_hid::secret::{OtpSecret, TempPassword};
use okey_token_sim::device::Firmware;

use crate::common::*;

fn secret(b: &[u8]) -> OtpSecret {
    OtpSecret::from_slice(b).expect("secret")
}

fn write<'a>(name: &'a str, s: &'a OtpSecret, counter: u64, eight: bool) -> SlotWrite<'a> {
    SlotWrite {
        name,
        secret: s,
        counter_or_step: counter,
        config: SlotConfig {
            eight_digits: eight,
            ..SlotConfig::default()
        },
        token_id: [0; 13],
    }
}

fn status_of(e: &NitrokeyError) -> Option<CommandStatus> {
    e.command_status()
}

#[test]
fn status_reports_firmware_and_card_serial() {
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        let st = nk.status().expect("status");
        assert_eq!(st.firmware.minor, minor);
        assert_eq!(st.firmware.major, 0);
        assert_eq!(st.card_serial, 0x00A1_B200 + u32::from(minor));
        assert!(!st.config.otp_pin_required);
        assert_eq!(nk.user_retry_count(), Ok(3));
        assert_eq!(nk.admin_retry_count(), Ok(3));
    }
}

#[test]
fn hotp_slot_write_read_code_erase_on_every_generation() {
    let rfc6 = [755_224, 287_082, 359_152, 969_429];
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        let s = secret(RFC_SECRET);
        let slot = Slot::Hotp(1);
        nk.admin(&pin("12345678"))
            .expect("admin")
            .write_slot(slot, &write("mail", &s, 0, false))
            .expect("write");
        let info_slot = nk.read_slot(slot).expect("read");
        assert_eq!(info_slot.name, "mail");
        assert_eq!(info_slot.counter_or_step, 0);
        assert_eq!(nk.read_slot_name(slot).expect("name"), "mail");
        for expected in rfc6 {
            let code = nk.get_code(slot, None).expect("code");
            assert_eq!(code.expose_value(), expected, "fw 0.{minor}");
            assert_eq!(code.expose_text().len(), 6);
        }
        // GET_CODE advanced the counter once per code.
        assert_eq!(nk.read_slot(slot).expect("read").counter_or_step, 4);
        let used = nk.programmed_slots().expect("list");
        assert_eq!(used.len(), 1);
        nk.admin(&pin("12345678"))
            .expect("admin")
            .erase_slot(slot)
            .expect("erase");
        let e = nk.read_slot(slot).expect_err("erased");
        assert_eq!(status_of(&e), Some(CommandStatus::SlotNotProgrammed));
        let e = nk.get_code(slot, None).expect_err("erased");
        assert_eq!(status_of(&e), Some(CommandStatus::SlotNotProgrammed));
    }
}

#[test]
fn eight_digit_hotp_with_initial_counter_matches_independent_hotp() {
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        let key: Vec<u8> = (0u8..20).map(|i| i.wrapping_mul(7) ^ 0x5A).collect();
        let s = secret(&key);
        nk.admin(&pin("12345678"))
            .expect("admin")
            .write_slot(Slot::Hotp(0), &write("h8", &s, 1_000_000, true))
            .expect("write");
        for c in 1_000_000..1_000_003u64 {
            let code = nk.get_code(Slot::Hotp(0), None).expect("code");
            assert_eq!(code.expose_value(), hotp(&key, c, 8));
            assert_eq!(code.expose_text().len(), 8);
        }
    }
}

#[test]
fn totp_slot_follows_the_device_clock() {
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        let s = secret(RFC_SECRET);
        let slot = Slot::Totp(3);
        nk.admin(&pin("12345678"))
            .expect("admin")
            .write_slot(slot, &write("vpn", &s, 30, true))
            .expect("write");
        assert_eq!(nk.read_slot(slot).expect("read").counter_or_step, 30);
        // RFC 6238 appendix B, SHA-1, T = 59 s.
        nk.set_time(TimeMode::Force, 59).expect("time");
        assert_eq!(
            nk.get_code(slot, None).expect("code").expose_value(),
            94_287_082
        );
        nk.set_time(TimeMode::Force, 1_111_111_109).expect("time");
        assert_eq!(
            nk.get_code(slot, None).expect("code").expose_value(),
            7_081_804
        );
    }
}

#[test]
fn totp_clock_is_ram_only_and_runs_one_percent_slow() {
    let (mut bench, id, info) = nk_bench(15);
    let mut nk = open_nk(&mut bench, &info);
    nk.set_time(TimeMode::Force, EPOCH).expect("time");
    bench.advance(std::time::Duration::from_secs(10_100));
    let now = bench.clock().now_ms();
    let device = bench
        .with_device(id, |d| match &d.firmware {
            Firmware::Nitrokey(n) => n.device_time(now),
            Firmware::YubiKey(_) => 0,
        })
        .expect("device");
    // 10 100 real seconds are 10 000 device seconds (plus the set-time transaction's few ms).
    assert_eq!(device - EPOCH, 10_000);
    // A power cycle forgets the time.
    bench.unplug(id);
    bench.plug(id);
    let now = bench.clock().now_ms();
    let device = bench
        .with_device(id, |d| match &d.firmware {
            Firmware::Nitrokey(n) => n.device_time(now),
            Firmware::YubiKey(_) => 1,
        })
        .expect("device");
    assert_eq!(device, 0);
}

#[test]
fn set_time_checked_mode_refuses_going_back() {
    for minor in NK_FIRMWARES {
        let (mut bench, id, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        // Erased reference: checked mode accepts.
        nk.set_time(TimeMode::Checked, EPOCH).expect("first set");
        let e = nk
            .set_time(TimeMode::Checked, EPOCH - 3600)
            .expect_err("backwards");
        assert_eq!(status_of(&e), Some(CommandStatus::TimestampWarning));
        nk.set_time(TimeMode::Checked, EPOCH + 3600)
            .expect("forward");
        nk.set_time(TimeMode::Force, EPOCH - 7200).expect("forced");
        bench.with_device(id, |d| {
            if let Firmware::Nitrokey(n) = &mut d.firmware {
                n.invalidate_time_reference();
            }
        });
        let e = nk
            .set_time(TimeMode::Checked, EPOCH + 9999)
            .expect_err("invalid ref");
        assert_eq!(status_of(&e), Some(CommandStatus::TimestampWarning));
    }
}

#[test]
fn wrong_pins_count_down_block_and_unlock() {
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        // Admin: a wrong PIN costs a try, the right one restores all three.
        let e = nk.admin(&pin("00000000")).expect_err("wrong admin");
        assert_eq!(status_of(&e), Some(CommandStatus::WrongPassword));
        assert_eq!(nk.admin_retry_count(), Ok(2));
        drop(nk.admin(&pin("12345678")).expect("right admin"));
        assert_eq!(nk.admin_retry_count(), Ok(3));
        // User: three wrong changes block it; then even the right PIN fails.
        for left in [2, 1, 0] {
            let e = nk
                .change_user_pin(&pin("999999"), &pin("654321"))
                .expect_err("wrong user");
            assert_eq!(status_of(&e), Some(CommandStatus::WrongPassword));
            assert_eq!(nk.user_retry_count(), Ok(left));
        }
        let e = nk
            .change_user_pin(&pin("123456"), &pin("654321"))
            .expect_err("blocked");
        assert_eq!(status_of(&e), Some(CommandStatus::WrongPassword));
        // Unlock with a too-short new PIN is refused by the card, and costs nothing.
        let e = nk
            .unlock_user_pin(&pin("12345678"), &pin("12345"))
            .expect_err("short");
        assert_eq!(status_of(&e), Some(CommandStatus::ErrorUnblockingPin));
        nk.unlock_user_pin(&pin("12345678"), &pin("24681357"))
            .expect("unlock");
        assert_eq!(nk.user_retry_count(), Ok(3));
        nk.change_user_pin(&pin("24681357"), &pin("11223344"))
            .expect("new PIN works");
    }
}

#[test]
fn pin_changes_enforce_card_minimum_lengths() {
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        let e = nk
            .change_user_pin(&pin("123456"), &pin("12345"))
            .expect_err("short user");
        assert_eq!(
            status_of(&e),
            Some(CommandStatus::ErrorChangingUserPassword)
        );
        let e = nk
            .change_admin_pin(&pin("12345678"), &pin("1234567"))
            .expect_err("short admin");
        assert_eq!(
            status_of(&e),
            Some(CommandStatus::ErrorChangingAdminPassword)
        );
        nk.change_admin_pin(&pin("12345678"), &pin("87654321"))
            .expect("admin change");
        let e = nk.admin(&pin("12345678")).expect_err("old admin");
        assert_eq!(status_of(&e), Some(CommandStatus::WrongPassword));
        drop(nk.admin(&pin("87654321")).expect("new admin"));
        nk.change_user_pin(&pin("123456"), &pin("abcdef"))
            .expect("user change");
    }
}

#[test]
fn factory_reset_restores_defaults_and_erases_slots() {
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        let s = secret(RFC_SECRET);
        nk.admin(&pin("12345678"))
            .expect("admin")
            .write_slot(Slot::Totp(0), &write("x", &s, 30, false))
            .expect("write");
        nk.change_admin_pin(&pin("12345678"), &pin("abcdefgh"))
            .expect("change");
        let e = nk.factory_reset(&pin("12345678")).expect_err("old PIN");
        assert_eq!(status_of(&e), Some(CommandStatus::WrongPassword));
        nk.factory_reset(&pin("abcdefgh")).expect("reset");
        assert!(nk.programmed_slots().expect("slots").is_empty());
        assert_eq!(nk.admin_retry_count(), Ok(3));
        drop(nk.admin(&pin("12345678")).expect("default admin PIN again"));
        nk.change_user_pin(&pin("123456"), &pin("123457"))
            .expect("default user PIN again");
    }
}

#[test]
fn otp_pin_protection_requires_the_user_pin_for_codes() {
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        let s = secret(RFC_SECRET);
        {
            let mut admin = nk.admin(&pin("12345678")).expect("admin");
            admin
                .write_slot(Slot::Hotp(2), &write("p", &s, 0, false))
                .expect("write");
            admin
                .write_config(GeneralConfig {
                    numlock: 0xFF,
                    capslock: 0xFF,
                    scrolllock: 0xFF,
                    otp_pin_required: true,
                })
                .expect("config");
        }
        assert!(nk.status().expect("status").config.otp_pin_required);
        assert!(matches!(
            nk.get_code(Slot::Hotp(2), None),
            Err(NitrokeyError::InvalidArgument(_))
        ));
        let e = nk
            .get_code(Slot::Hotp(2), Some(&pin("000000")))
            .expect_err("wrong user PIN");
        assert_eq!(status_of(&e), Some(CommandStatus::WrongPassword));
        let c = nk
            .get_code(Slot::Hotp(2), Some(&pin("123456")))
            .expect("code");
        assert_eq!(c.expose_value(), 755_224);
        let c = nk
            .get_code(Slot::Hotp(2), Some(&pin("123456")))
            .expect("code");
        assert_eq!(c.expose_value(), 287_082);
    }
}

#[test]
fn secret_length_limits_depend_on_the_generation() {
    let key40: Vec<u8> = (0u8..40).collect();
    for minor in NK_FIRMWARES {
        let (mut bench, _, info) = nk_bench(minor);
        let mut nk = open_nk(&mut bench, &info);
        let s = secret(&key40);
        let r = nk
            .admin(&pin("12345678"))
            .expect("admin")
            .write_slot(Slot::Hotp(0), &write("long", &s, 5, false));
        if minor <= 7 {
            assert!(matches!(r, Err(NitrokeyError::Secret(_))), "fw 0.{minor}");
        } else {
            r.expect("40-byte secret");
            let c = nk.get_code(Slot::Hotp(0), None).expect("code");
            assert_eq!(c.expose_value(), hotp(&key40, 5, 6));
        }
    }
}

#[test]
fn rewrite_with_empty_secret_keeps_the_stored_secret() {
    let (mut bench, _, info) = nk_bench(15);
    let mut nk = open_nk(&mut bench, &info);
    let s = secret(RFC_SECRET);
    let empty = secret(&[]);
    let mut admin = nk.admin(&pin("12345678")).expect("admin");
    admin
        .write_slot(Slot::Hotp(0), &write("k", &s, 0, false))
        .expect("write");
    admin
        .write_slot(Slot::Hotp(0), &write("k2", &empty, 7, false))
        .expect("rewrite");
    drop(admin);
    let info_slot = nk.read_slot(Slot::Hotp(0)).expect("read");
    assert_eq!(
        (info_slot.name.as_str(), info_slot.counter_or_step),
        ("k2", 7)
    );
    // RFC 4226 count 7.
    assert_eq!(
        nk.get_code(Slot::Hotp(0), None)
            .expect("code")
            .expose_value(),
        162_583
    );
    // The legacy generation cannot keep a secret.
    let (mut bench, _, info) = nk_bench(7);
    let mut nk = open_nk(&mut bench, &info);
    let r = nk
        .admin(&pin("12345678"))
        .expect("admin")
        .write_slot(Slot::Hotp(0), &write("k", &empty, 0, false));
    assert!(matches!(r, Err(NitrokeyError::Unsupported { .. })));
}

#[test]
fn generation_specific_commands_answer_unknown_command() {
    let tmp = TempPassword::from_text("123123123").expect("tmp");
    // AUTHORIZE exists only up to 0.7.
    let (mut bench, _, info) = nk_bench(8);
    let mut nk = open_nk(&mut bench, &info);
    let e = nk
        .transact(&proto::authorize(0x1234, &tmp).expect("req"))
        .expect_err("unknown");
    assert_eq!(status_of(&e), Some(CommandStatus::UnknownCommand));
    // SEND_OTP_DATA exists only from 0.8.
    let (mut bench, _, info) = nk_bench(7);
    let mut nk = open_nk(&mut bench, &info);
    let e = nk
        .transact(&proto::send_otp_data(&tmp, proto::OtpDataKind::Name, 0, b"x").expect("req"))
        .expect_err("unknown");
    assert_eq!(status_of(&e), Some(CommandStatus::UnknownCommand));
    // Without AUTHORIZE, 0.7 refuses admin commands.
    let e = nk
        .transact(&proto::erase_slot(0x10, None).expect("req"))
        .expect_err("unauthorised");
    assert_eq!(status_of(&e), Some(CommandStatus::NotAuthorized));
}

#[test]
fn inline_commands_need_the_current_temporary_password() {
    let (mut bench, _, info) = nk_bench(15);
    let mut nk = open_nk(&mut bench, &info);
    let wrong = TempPassword::from_text("not-the-one").expect("tmp");
    let e = nk
        .transact(&proto::erase_slot(0x20, Some(&wrong)).expect("req"))
        .expect_err("unauthorised");
    assert_eq!(status_of(&e), Some(CommandStatus::NotAuthorized));
    // WRITE_TO_SLOT without SEND_OTP_DATA first.
    drop(nk.admin(&pin("12345678")).expect("admin"));
    let e = nk
        .transact(
            &proto::write_to_slot(&wrong, 0x20, 30, SlotConfig::default(), &[0; 13]).expect("req"),
        )
        .expect_err("unauthorised");
    assert_eq!(status_of(&e), Some(CommandStatus::NotAuthorized));
    // The verification slot 0x13 of firmware >= 0.9 gives no codes.
    let e = nk
        .transact(&proto::get_code(0x13, None).expect("req"))
        .expect_err("slot 0x13");
    assert_eq!(status_of(&e), Some(CommandStatus::WrongSlot));
}

#[test]
fn slot_names_must_be_present() {
    let (mut bench, _, info) = nk_bench(15);
    let mut nk = open_nk(&mut bench, &info);
    let s = secret(RFC_SECRET);
    let r = nk
        .admin(&pin("12345678"))
        .expect("admin")
        .write_slot(Slot::Hotp(0), &write("", &s, 0, false));
    assert!(matches!(r, Err(NitrokeyError::InvalidArgument(_))));
    let r = nk
        .admin(&pin("12345678"))
        .expect("admin")
        .write_slot(Slot::Totp(0), &write("t", &s, 0, false));
    assert!(matches!(r, Err(NitrokeyError::InvalidArgument(_))));
    let r = nk
        .admin(&pin("12345678"))
        .expect("admin")
        .write_slot(Slot::Hotp(3), &write("t", &s, 0, false));
    assert!(matches!(r, Err(NitrokeyError::InvalidArgument(_))));
}

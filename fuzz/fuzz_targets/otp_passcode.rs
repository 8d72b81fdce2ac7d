//! Fuzz the passcode path of a login: `split_passcode`, `Code::parse`, the PIN check and HOTP/
//! TOTP verification on arbitrary text. Nothing may panic, a parsed code prints back as the text
//! it came from, and the token's own code always verifies.
//!
//! Input layout: a byte of digits (6..=10) and flags, 8 bytes of counter/time, then the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use okey_otp::{
    Algorithm, Code, Digits, OtpKey, OtpState, Pepper, Pin, PinBinding, TotpParams, hotp, split_passcode,
    verify_hotp, verify_totp, verify_unknown,
};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let Ok(digits) = Digits::new(6 + head % 5) else {
        return;
    };
    let pin_expected = head & 0x80 != 0;
    let mut number = [0u8; 8];
    for (slot, b) in number.iter_mut().zip(rest) {
        *slot = *b;
    }
    let number = u64::from_le_bytes(number);
    let text = String::from_utf8_lossy(rest.get(8..).unwrap_or(&[]));

    // Code::parse: accepted exactly for `digits` ASCII digits, and prints back unchanged.
    match Code::parse(&text, digits) {
        Ok(code) => {
            assert_eq!(code.to_text(), text);
            assert!(text.bytes().all(|b| b.is_ascii_digit()));
        }
        Err(_) => assert!(
            text.len() != usize::from(digits.get()) || !text.bytes().all(|b| b.is_ascii_digit())
        ),
    }

    let algorithm =
        [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512][usize::from(head >> 5 & 3) % 3];
    let key = OtpKey::new(algorithm, b"fuzzing key 0123456789").expect("valid key");
    let state = OtpState {
        counter: number,
        last_step: (head & 0x40 != 0).then_some(number >> 10),
        drift: i64::from(head as i8),
    };
    let window = u32::from(head >> 3 & 0x0f);
    let pepper = Pepper::new(b"0123456789abcdef0123456789abcdef").expect("pepper");

    if let Ok(passcode) = split_passcode(&text, digits, pin_expected) {
        assert_eq!(passcode.pin.is_some(), pin_expected);
        assert!(text.ends_with(&passcode.code.to_text()));
        if let Some(pin) = &passcode.pin {
            let stored = pepper.verifier(PinBinding::Holder("holder-1"), pin);
            assert!(bool::from(pepper.check(PinBinding::Holder("holder-1"), pin, &stored)));
            assert!(!bool::from(okey_otp::check_pin_unknown(&pepper, pin)));
        }
        let _ = verify_hotp(&key, digits, &state, window, &passcode.code);
        let params = TotpParams::new(digits, 30, number >> 40).expect("params");
        let _ = verify_totp(&key, &params, &state, number >> 8, window, &passcode.code);
        verify_unknown(algorithm, digits, window, &passcode.code);
    }

    // The token's own next code always verifies at the stored counter (unless the counter is
    // exhausted), whatever the window.
    let own = hotp(&key, number, digits);
    let proof = verify_hotp(&key, digits, &state, window.max(1), &own);
    if number < u64::MAX {
        assert_eq!(proof.map(|p| p.matched()), Some(number));
    }
    let _ = Pin::new(&text);
});

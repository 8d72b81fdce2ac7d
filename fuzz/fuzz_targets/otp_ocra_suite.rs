//! Fuzz the OCRA suite parser and, for suites that parse, the response computation and
//! verification with arbitrary inputs: nothing may panic, and a computed response must verify.
//!
//! Input layout: suite text up to the first `\n`; then a flag byte, the key, the question and
//! the session, each length-prefixed by one byte, then up to 8 bytes of counter/timestamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use okey_otp::{
    Algorithm, OcraError, OcraInput, OcraSuite, OtpKey, OtpState, digest, ocra, verify_ocra,
};

/// Split off a length-prefixed piece.
fn piece<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((&len, rest)) = data.split_first() else {
        return &[];
    };
    let len = usize::from(len).min(rest.len());
    let (head, tail) = rest.split_at(len);
    *data = tail;
    head
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (suite_bytes, rest) = data.split_at(split);
    let Ok(text) = std::str::from_utf8(suite_bytes) else {
        return;
    };
    let Ok(suite) = text.parse::<OcraSuite>() else {
        return;
    };
    // Display gives back the text that was parsed.
    assert_eq!(suite.to_string(), text);

    let mut rest = rest.get(1..).unwrap_or(&[]);
    let flags = rest.first().copied().unwrap_or(0);
    rest = rest.get(1..).unwrap_or(&[]);
    let key_bytes = piece(&mut rest);
    let question_bytes = piece(&mut rest);
    let session = piece(&mut rest);
    let mut number = [0u8; 8];
    for (slot, b) in number.iter_mut().zip(rest) {
        *slot = *b;
    }
    let number = u64::from_le_bytes(number);

    // Mostly the key of the suite's hash, sometimes another one (must be an error, not a panic).
    let algorithm = if flags & 0x80 != 0 {
        Algorithm::Sha1
    } else {
        suite.algorithm()
    };
    let key_bytes: &[u8] = if key_bytes.is_empty() {
        b"k"
    } else {
        key_bytes
    };
    let Ok(key) = OtpKey::new(algorithm, key_bytes) else {
        return;
    };
    let question = String::from_utf8_lossy(question_bytes);
    let pin_hash = suite.pin_hash().map(|alg| digest(alg, b"1234"));
    // Flags flip each input between "as the suite asks" and "the opposite".
    let give = |bit: u8, wanted: bool| (flags & bit == 0) == wanted;
    let input = OcraInput {
        counter: give(0x01, suite.has_counter()).then_some(number),
        question: &question,
        pin_hash: if give(0x02, suite.pin_hash().is_some()) {
            Some(pin_hash.as_ref().map_or(&b"short"[..], |h| h.as_bytes()))
        } else {
            None
        },
        session: give(0x04, suite.session_len().is_some()).then_some(session),
        timestamp: give(0x08, suite.time_step().is_some()).then_some(number >> 8),
    };
    let Ok(response) = ocra(&key, &suite, &input) else {
        return;
    };
    let expected_len = suite
        .digits()
        .map_or(2 * suite.algorithm().output_len(), |d| usize::from(d.get()));
    assert_eq!(response.as_str().len(), expected_len);

    // The response computed must verify against the same inputs, at the same counter.
    let state = OtpState {
        counter: input.counter.unwrap_or(0),
        ..OtpState::default()
    };
    let window = u32::from(flags >> 4 & 0x3) + 1;
    let skew = u32::from(flags >> 6 & 0x1);
    let verified = verify_ocra(
        &key,
        &suite,
        &state,
        &input,
        window,
        skew,
        response.as_str(),
    );
    if suite.has_counter() && state.counter == u64::MAX {
        // The response is right, but the counter cannot move past it: refused, as an error.
        assert_eq!(verified, Err(OcraError::CounterExhausted));
    } else {
        let proof = verified
            .expect("a computed response is well formed")
            .expect("a computed response verifies");
        if suite.has_counter() {
            assert_eq!(proof.matched(), state.counter);
            assert_eq!(proof.after().counter, state.counter + 1);
        } else {
            assert_eq!(proof.after(), state);
        }
    }
    // The same response with one digit changed: accepted or rejected (another candidate of the
    // window may produce it), but never a format error or a panic.
    let mut altered = response.as_str().as_bytes().to_vec();
    if let Some(first) = altered.first_mut() {
        *first = if *first == b'0' { b'1' } else { b'0' };
    }
    let altered = String::from_utf8(altered).expect("ASCII");
    match verify_ocra(&key, &suite, &state, &input, window, skew, &altered) {
        Ok(_) | Err(OcraError::CounterExhausted) => {}
        Err(e) => panic!("a response of the suite's shape is well formed: {e}"),
    }
});

//! Fuzz target for the PSKC reader: any input either yields packages or errors, never a
//! panic, an unbounded read or a broken item contract; packages that parse survive an
//! encrypted export and read back identical.

#![no_main]

use libfuzzer_sys::fuzz_target;
use okey_intake::{ExportProtection, ImportError, KeyMaterial, Limits, PskcOptions, PskcReader};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, xml)) = data.split_first() else {
        return;
    };
    let key = match selector % 3 {
        0 => KeyMaterial::None,
        // The pre-shared key of RFC 6030 figure 6, so the seed corpus reaches decryption.
        1 => KeyMaterial::PreSharedKey(Zeroizing::new(vec![
            0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0x78,
            0x90, 0x12,
        ])),
        _ => KeyMaterial::Password(Zeroizing::new("qwerty".into())),
    };
    let limits = Limits {
        max_pbkdf2_iterations: 2000,
        max_text_len: 4096,
        ..Limits::default()
    };
    let options = PskcOptions {
        key,
        limits,
        ..PskcOptions::default()
    };
    let mut accepted = Vec::new();
    let mut last_position = 0;
    let mut ended = false;
    for item in PskcReader::new(xml, options) {
        assert!(!ended, "an item after a file error");
        match item {
            Ok(p) => {
                assert!(p.position > last_position);
                last_position = p.position;
                assert!(!p.secret.is_empty() && p.secret.len() <= limits.max_secret_len);
                if accepted.len() < 4 {
                    accepted.push(p);
                }
            }
            Err(ImportError::Package(e)) => {
                let okey_intake::Position::Package(n) = e.package.position else {
                    panic!("line position in PSKC")
                };
                assert!(n > last_position);
                last_position = n;
            }
            Err(ImportError::File(_)) => ended = true,
        }
    }
    if accepted.is_empty() {
        return;
    }
    // Whatever was read can be exported and read back unchanged.
    let psk = Zeroizing::new(vec![0x42; 32]);
    let Ok((out, n)) = okey_intake::export(
        Vec::new(),
        ExportProtection::pre_shared_key(psk.clone(), "fuzz"),
        &accepted,
    ) else {
        panic!("export of parsed packages failed");
    };
    assert_eq!(n, accepted.len());
    let back: Vec<_> = PskcReader::new(out.as_slice(), PskcOptions::with_key(psk)).collect();
    assert_eq!(back.len(), accepted.len());
    for (b, a) in back.into_iter().zip(&accepted) {
        match b {
            Ok(b) => {
                assert_eq!(&*b.secret, &*a.secret);
                assert_eq!(b.serial, a.serial);
                assert_eq!(b.algorithm, a.algorithm);
                assert_eq!(b.counter, a.counter);
                assert_eq!(b.response, a.response);
            }
            Err(e) => panic!("{e}"),
        }
    }
});

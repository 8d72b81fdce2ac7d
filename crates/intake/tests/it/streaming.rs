//! Streaming: many packages from a generated reader, progress reports, and the
//! all-or-nothing / validating helpers.

use std::sync::{Arc, Mutex};

use okey_intake::synthetic::{SyntheticPskc, synthetic_secret, synthetic_serial};
use okey_intake::{PskcOptions, PskcReader, check_all};

use crate::common::hotp;

#[test]
fn generated_container_with_progress() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let n = 2500;
    let reader = PskcReader::new(SyntheticPskc::new(n), PskcOptions::plain())
        .on_progress(1000, move |p| sink.lock().unwrap().push(p));
    let mut count = 0;
    for (i, item) in reader.enumerate() {
        let p = item.unwrap();
        count += 1;
        assert_eq!(p.position, i + 1);
        assert_eq!(p.serial.as_deref(), Some(synthetic_serial(i + 1).as_str()));
        assert_eq!(&*p.secret, &synthetic_secret(i + 1)[..]);
        if i % 500 == 0 {
            // The seed works as an HOTP key (checked against the reference implementation).
            assert_eq!(
                hotp(p.hash, &p.secret, 0, 6),
                hotp(p.hash, &synthetic_secret(i + 1), 0, 6)
            );
        }
    }
    assert_eq!(count, n);
    let seen = seen.lock().unwrap();
    let packages: Vec<usize> = seen.iter().map(|p| p.packages).collect();
    assert_eq!(packages, vec![1000, 2000, 2500]);
    assert!(seen.last().unwrap().done);
    assert!(seen.windows(2).all(|w| w[0].bytes < w[1].bytes));
}

#[test]
fn check_all_counts_without_keeping() {
    assert_eq!(
        check_all(PskcReader::new(
            SyntheticPskc::new(300),
            PskcOptions::plain()
        ))
        .unwrap(),
        300
    );
}

//! Failure counting, soft lock, hard lock, unlock.

use okey_store::*;

use crate::common::*;

fn store_with(db: &Db, lockout: LockoutPolicy) -> Store {
    let s = Store::open(StoreConfig {
        lockout,
        ..db.config()
    })
    .expect("open");
    s.create_token(hotp_token("L1"), &actor()).expect("create");
    s
}

fn soft_lock_slows_guessing_then_expires(db: &Db) {
    let s = store_with(db, LockoutPolicy::default());
    rt().block_on(async {
        for (i, expected) in [(1, false), (2, false), (3, true)] {
            let o = verify(&s, "L1", "000000", 100).await;
            assert_eq!(o.reason, Reason::WrongCode);
            let t = s.token("L1").expect("get");
            assert_eq!(t.failures, i);
            assert_eq!(t.locked_until.is_some(), expected, "after {i} failures");
        }
        assert_eq!(s.token("L1").expect("get").locked_until, Some(130));
        // While soft-locked even the right code is refused, and nothing is counted.
        let o = verify(&s, "L1", &hotp(SEED, 0, 6), 129).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::SoftLocked));
        let t = s.token("L1").expect("get");
        assert_eq!((t.failures, t.counter), (3, 0));
        // Once it expires, the right code works and the count resets.
        let o = verify(&s, "L1", &hotp(SEED, 0, 6), 130).await;
        assert_eq!((o.accepted, o.reason), (true, Reason::Accepted));
        let t = s.token("L1").expect("get");
        assert_eq!((t.failures, t.locked_until, t.counter), (0, None, 1));
    });
}

fn hard_lock_holds_until_support_unlocks(db: &Db) {
    let s = store_with(db, LockoutPolicy::default());
    rt().block_on(async {
        // Each attempt waits out the soft lock: only the hard limit stops this guesser.
        let mut now = 1000;
        for i in 1..=10u32 {
            let o = verify(&s, "L1", "000000", now).await;
            assert_eq!(o.reason, Reason::WrongCode, "attempt {i}");
            now += 31;
        }
        let t = s.token("L1").expect("get");
        assert!(t.locked);
        assert_eq!(t.failures, 10);
        let o = verify(&s, "L1", &hotp(SEED, 0, 6), now + 10_000).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::Locked));
        assert_eq!(s.token("L1").expect("get").counter, 0);
        let t = s.unlock("L1", &actor()).expect("unlock");
        assert_eq!((t.locked, t.failures, t.locked_until), (false, 0, None));
        let o = verify(&s, "L1", &hotp(SEED, 0, 6), now + 10_001).await;
        assert!(o.accepted, "{o:?}");
    });
}

fn wrong_pins_count_and_no_soft_lock_when_disabled(db: &Db) {
    let s = store_with(
        db,
        LockoutPolicy {
            hard_after: 4,
            soft_after: None,
            soft_lock_seconds: 30,
        },
    );
    s.set_pin("L1", Some(&Pin::new("2468").expect("pin")), &actor())
        .expect("pin");
    rt().block_on(async {
        let code = hotp(SEED, 0, 6);
        for i in 1..=3u32 {
            let o = verify(&s, "L1", &format!("1357{code}"), 10).await;
            assert_eq!(o.reason, Reason::WrongPin);
            let t = s.token("L1").expect("get");
            assert_eq!((t.failures, t.locked, t.locked_until), (i, false, None));
        }
        let o = verify(&s, "L1", &format!("2468{code}"), 10).await;
        assert!(o.accepted, "a success before the limit resets the count");
        assert_eq!(s.token("L1").expect("get").failures, 0);
        for _ in 0..4 {
            verify(&s, "L1", "2468000000", 10).await;
        }
        let t = s.token("L1").expect("get");
        assert!(t.locked);
        let o = verify(&s, "L1", &format!("2468{}", hotp(SEED, 1, 6)), 10).await;
        assert_eq!(o.reason, Reason::Locked);
    });
}

/// A soft lock ending past what the database holds is clamped, not lost: the failures are
/// counted and the lock holds.
fn soft_lock_ending_past_the_storable_range_still_locks(db: &Db) {
    let s = store_with(
        db,
        LockoutPolicy {
            hard_after: 10,
            soft_after: Some(3),
            soft_lock_seconds: MAX_SOFT_LOCK_SECONDS,
        },
    );
    let max = i64::MAX as u64;
    let start = max - 100;
    rt().block_on(async {
        for i in 0..3 {
            let o = verify(&s, "L1", "000000", start + i).await;
            assert_eq!(o.reason, Reason::WrongCode);
        }
        let t = s.token("L1").expect("get");
        assert_eq!((t.failures, t.locked_until), (3, Some(max)));
        let o = verify(&s, "L1", &hotp(SEED, 0, 6), start + 50).await;
        assert_eq!((o.accepted, o.reason), (false, Reason::SoftLocked));
        assert_eq!(s.token("L1").expect("get").counter, 0);
    });
}

/// A soft lock longer than a year is a configuration error, named as such, not a store that
/// silently stops locking.
#[test]
fn open_refuses_a_soft_lock_longer_than_a_year() {
    let dir = tempfile::tempdir().expect("dir");
    for seconds in [MAX_SOFT_LOCK_SECONDS + 1, i64::MAX as u64, u64::MAX] {
        let Err(err) = Store::open(StoreConfig {
            lockout: LockoutPolicy {
                soft_lock_seconds: seconds,
                ..LockoutPolicy::default()
            },
            ..config(dir.path())
        }) else {
            panic!("a soft lock of {seconds} s was accepted");
        };
        assert!(
            matches!(
                err,
                StoreError::Invalid {
                    field: "lockout.soft_lock_seconds",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("soft_lock_seconds"), "{err}");
    }
    assert!(
        Store::open(StoreConfig {
            lockout: LockoutPolicy {
                soft_lock_seconds: MAX_SOFT_LOCK_SECONDS,
                ..LockoutPolicy::default()
            },
            ..config(dir.path())
        })
        .is_ok()
    );
}

/// Wrong bench read-backs are staff mistakes: they never count toward the token's lockout (they
/// are counted apart), and the right code still confirms after any number of them.
fn wrong_confirmations_do_not_lock(db: &Db) {
    let s = store_with(db, LockoutPolicy::default());
    let t = NewToken {
        valid_until: None,
        status: TokenStatus::Initialising,
        ..hotp_token("I1")
    };
    s.create_token(t, &actor()).expect("create");
    let right = hotp(SEED, 0, 6);
    rt().block_on(async {
        for i in 0..12 {
            let o = s
                .confirm_initialisation("I1", "000000", 100 + i, &actor())
                .await
                .expect("confirm");
            assert_eq!((o.accepted, o.reason), (false, Reason::WrongCode));
        }
        let info = s.token("I1").expect("get");
        assert_eq!(
            (info.failures, info.locked, info.status),
            (0, false, TokenStatus::Initialising)
        );
        assert_eq!(s.stats().staff_failures, 12);
        let o = s
            .confirm_initialisation("I1", &right, 120, &actor())
            .await
            .expect("confirm");
        assert_eq!((o.accepted, o.reason), (true, Reason::Confirmed));
    });
}

/// Wrong resynchronisation codes are staff mistakes too: the holder's next code is accepted.
fn wrong_resyncs_do_not_lock(db: &Db) {
    let s = store_with(db, LockoutPolicy::default());
    let (a, c) = (hotp(SEED, 50, 6), hotp(SEED, 52, 6));
    rt().block_on(async {
        for i in 0..12 {
            let o = s
                .resync("L1", &a, &c, 100 + i, &actor())
                .await
                .expect("resync");
            assert_eq!((o.accepted, o.reason), (false, Reason::WrongCode));
        }
        assert_eq!(s.token("L1").expect("get").failures, 0);
        assert_eq!(s.stats().staff_failures, 12);
        assert!(verify(&s, "L1", &hotp(SEED, 0, 6), 120).await.accepted);
    });
}

/// A resync is refused without testing the codes while the token is soft-locked, like a verify.
fn resync_is_refused_while_soft_locked(db: &Db) {
    let s = store_with(db, LockoutPolicy::default());
    let (a, b) = (hotp(SEED, 50, 6), hotp(SEED, 51, 6));
    rt().block_on(async {
        for _ in 0..3 {
            assert_eq!(
                verify(&s, "L1", "000000", 100).await.reason,
                Reason::WrongCode
            );
        }
        let o = s.resync("L1", &a, &b, 110, &actor()).await.expect("resync");
        assert_eq!((o.accepted, o.reason), (false, Reason::SoftLocked));
        let info = s.token("L1").expect("get");
        assert_eq!((info.counter, info.failures), (0, 3));
        // Once the soft lock is over the same codes resynchronise.
        let o = s.resync("L1", &a, &b, 130, &actor()).await.expect("resync");
        assert_eq!((o.accepted, o.reason), (true, Reason::Resynced));
        assert_eq!(s.token("L1").expect("get").counter, 52);
    });
}

both!(
    soft_lock_slows_guessing_then_expires,
    hard_lock_holds_until_support_unlocks,
    wrong_pins_count_and_no_soft_lock_when_disabled,
    soft_lock_ending_past_the_storable_range_still_locks,
    wrong_confirmations_do_not_lock,
    wrong_resyncs_do_not_lock,
    resync_is_refused_while_soft_locked,
);

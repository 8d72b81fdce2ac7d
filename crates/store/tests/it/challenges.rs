//! OCRA challenges in the store: single use enforced by the database, replaced beyond the
//! per-token bound, expiring, remembered for a while once spent; and the outbox's leases.

use okey_store::challenge::{ChallengeRefusal, ChallengeState, MAX_PER_TOKEN};
use okey_store::outbox::{MailState, NewMail};

use crate::common::*;

const NOW: u64 = 1_800_000_000;

fn tx(n: usize) -> String {
    format!("{n:032x}")
}

fn single_use_bound_and_expiring(db: &Db) {
    let s = db.open();
    let rt = rt();
    rt.block_on(async {
        let c = s
            .issue_challenge(tx(1), "0042".into(), "12345678".into(), NOW, 120)
            .await
            .expect("issue")
            .expect("issued");
        assert_eq!(c.expires_at, NOW + 120);
        assert_eq!(c.state, ChallengeState::Open);
        let got = s.take_challenge(&tx(1), NOW + 120).await.expect("take");
        let got = got.expect("taken in time");
        assert_eq!(
            (got.serial.as_str(), got.question.as_str()),
            ("0042", "12345678")
        );
        assert_eq!(
            s.take_challenge(&tx(1), NOW + 120).await.expect("take"),
            Err(ChallengeRefusal::Used)
        );
        assert_eq!(
            s.take_challenge(&tx(1), NOW + 121).await.expect("take"),
            Err(ChallengeRefusal::Expired)
        );
        // Answered too late: refused, and spent all the same.
        s.issue_challenge(tx(2), "0042".into(), "87654321".into(), NOW, 120)
            .await
            .expect("issue")
            .expect("issued");
        assert_eq!(
            s.take_challenge(&tx(2), NOW + 121).await.expect("take"),
            Err(ChallengeRefusal::Expired)
        );
        assert_eq!(
            s.take_challenge(&tx(2), NOW + 100).await.expect("take"),
            Err(ChallengeRefusal::Used)
        );
        assert_eq!(
            s.take_challenge(&tx(99), NOW).await.expect("take"),
            Err(ChallengeRefusal::Unknown)
        );
        // A transaction id that is not one: refused before any write.
        assert!(s.take_challenge("x y", NOW).await.is_err());
        assert!(
            s.issue_challenge("".into(), "0042".into(), "1".into(), NOW, 120)
                .await
                .is_err()
        );
        // One lifetime after expiry, spent challenges are forgotten (by the next issue).
        s.issue_challenge(tx(3), "0043".into(), "11111111".into(), NOW + 241, 120)
            .await
            .expect("issue")
            .expect("issued");
        assert_eq!(
            s.take_challenge(&tx(1), NOW + 241).await.expect("take"),
            Err(ChallengeRefusal::Unknown)
        );
    });
}

/// Asking again and again for one token replaces its oldest challenges; its newest still work.
fn one_token_cannot_hold_more_than_its_share(db: &Db) {
    let s = db.open();
    let rt = rt();
    rt.block_on(async {
        for n in 0..MAX_PER_TOKEN + 3 {
            s.issue_challenge(tx(n), "0042".into(), format!("{n:08}"), NOW, 120)
                .await
                .expect("issue")
                .expect("issued");
        }
        for n in 0..3 {
            assert_eq!(
                s.take_challenge(&tx(n), NOW + 1).await.expect("take"),
                Err(ChallengeRefusal::Replaced),
                "challenge {n}"
            );
        }
        for n in 3..MAX_PER_TOKEN + 3 {
            let c = s.take_challenge(&tx(n), NOW + 1).await.expect("take");
            assert_eq!(c.map(|c| c.question), Ok(format!("{n:08}")));
        }
        // Another token is not affected.
        s.issue_challenge(tx(100), "0043".into(), "00000000".into(), NOW, 120)
            .await
            .expect("issue")
            .expect("another token still gets one");
    });
}

fn mail(n: u32) -> NewMail {
    NewMail {
        message_id: format!("<okey.lease{n}@example.org>"),
        template: "test".into(),
        to: vec!["marie.hoarau@ac-example.fr".into()],
        cc: vec![],
        subject: "Clé prête".into(),
        body: "Bonjour.\n".into(),
    }
}

/// A leased mail is not leased again until its outcome is recorded or its lease runs out.
fn a_leased_mail_is_leased_once_until_its_lease_runs_out(db: &Db) {
    let s = db.open();
    let a = s.enqueue_mail(mail(1), &actor()).expect("enqueue");
    let b = s.enqueue_mail(mail(2), &actor()).expect("enqueue");
    let now = s.mail_list(&[MailState::Pending], 10).expect("list")[1].created_at;
    let rt = rt();
    rt.block_on(async {
        let first = s.claim_mail(now, 60, "node-a", 1).await.expect("claim");
        assert_eq!(first.iter().map(|m| m.id).collect::<Vec<_>>(), [a]);
        let second = s.claim_mail(now, 60, "node-b", 10).await.expect("claim");
        assert_eq!(second.iter().map(|m| m.id).collect::<Vec<_>>(), [b]);
        assert!(
            s.claim_mail(now + 59, 60, "node-b", 10)
                .await
                .expect("claim")
                .is_empty()
        );
        // The lease's end is when a sender should look again.
        assert_eq!(s.mail_next_due().expect("next"), Some(now + 60));
        // Node a records its outcome; node b died: its mail is free once the lease is over.
        s.mail_sent(a, 1, now + 1).await.expect("sent");
        let taken = s
            .claim_mail(now + 60, 60, "node-c", 10)
            .await
            .expect("claim");
        assert_eq!(taken.iter().map(|m| m.id).collect::<Vec<_>>(), [b]);
        // A retry frees the lease until its next attempt.
        s.mail_retry(b, 1, now + 70, "421 busy")
            .await
            .expect("retry");
        assert!(
            s.claim_mail(now + 69, 60, "node-c", 10)
                .await
                .expect("claim")
                .is_empty()
        );
        let again = s
            .claim_mail(now + 70, 60, "node-a", 10)
            .await
            .expect("claim");
        assert_eq!(
            again.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(),
            [(b, 1)]
        );
        assert!(s.claim_mail(now, 0, "node-a", 1).await.is_err(), "no lease");
        assert!(s.claim_mail(now, 60, "", 1).await.is_err(), "no name");
    });
}

both!(
    single_use_bound_and_expiring,
    one_token_cannot_hold_more_than_its_share,
    a_leased_mail_is_leased_once_until_its_lease_runs_out
);

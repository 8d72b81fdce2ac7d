//! The RADIUS front end's verify path: every Access-Request runs the function gRPC `Verify`
//! runs ([`Okey::verify_inner`]), as a verifier principal named after the RADIUS client, so
//! replay protection, lockout, PINs, challenges and audit are the same for both.

use std::sync::Arc;

use okey_domain::Role;
use okey_radius::{Verdict, Verifier, VerifyCall};
use tonic::Code;
use zeroize::Zeroizing;

use crate::callers::Principal;
use crate::proto;
use crate::service::Okey;

/// [`Verifier`] over the service's verify path.
pub(crate) struct RadiusVerifier {
    okey: Arc<Okey>,
}

impl RadiusVerifier {
    pub(crate) fn new(okey: Arc<Okey>) -> Self {
        RadiusVerifier { okey }
    }

    async fn run(
        &self,
        principal: &Principal,
        call: &VerifyCall,
        passcode: String,
        transaction_id: String,
    ) -> Result<proto::VerifyResponse, tonic::Status> {
        let request = proto::VerifyRequest {
            subject: Some(proto::Subject {
                kind: Some(proto::subject::Kind::User(call.user.clone())),
            }),
            passcode,
            transaction_id,
            client: Some(proto::ClientInfo {
                nas_identifier: call.nas_identifier.clone(),
                client_address: call.source.to_string(),
                calling_station: call.calling_station.clone(),
            }),
        };
        self.okey.verify_inner(principal, request).await
    }
}

impl Verifier for RadiusVerifier {
    async fn verify(&self, mut call: VerifyCall) -> Verdict {
        let principal = Principal {
            name: format!("radius:{}", call.client),
            roles: vec![Role::Verifier],
            // The RADIUS client's address; its UDP port is not kept.
            peer: Some(std::net::SocketAddr::new(call.source, 0)),
            person: None,
            acting_for: None,
        };
        let password = Zeroizing::new(std::mem::take(&mut *call.password));
        let state = call.state.take();
        let answering = state.is_some();
        let mut result = self
            .run(
                &principal,
                &call,
                password.as_str().to_owned(),
                state.unwrap_or_default(),
            )
            .await;
        // A challenge-response user who sent their PIN (or anything but a response) first: the
        // verify path says a challenge is required, and issuing one is the same path given an
        // empty passcode. The response, bound to the PIN by the suite, is what gets checked.
        if !answering
            && matches!(&result, Ok(r) if r.result == proto::VerifyResult::Reject as i32
                && r.reason == okey_store::Reason::ChallengeRequired.as_str())
        {
            result = self
                .run(&principal, &call, String::new(), String::new())
                .await;
        }
        verdict_of(result)
    }
}

fn verdict_of(result: Result<proto::VerifyResponse, tonic::Status>) -> Verdict {
    match result {
        Ok(r) if r.result == proto::VerifyResult::Accept as i32 => Verdict::Accept,
        Ok(r) if r.result == proto::VerifyResult::Challenge as i32 => Verdict::Challenge {
            state: r.transaction_id,
            challenge: r.challenge,
        },
        Ok(r) => Verdict::Reject { reason: r.reason },
        // Bad input (an empty passcode for a user with no challenge token, a malformed user
        // name, a transaction id too long) is a negative answer.
        Err(s)
            if matches!(
                s.code(),
                Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::NotFound
                    | Code::PermissionDenied
            ) =>
        {
            Verdict::Reject {
                reason: s.message().to_owned(),
            }
        }
        // The store or the challenge book is unavailable: no answer, so the client retries.
        Err(s) => Verdict::Unavailable {
            reason: s.message().to_owned(),
        },
    }
}

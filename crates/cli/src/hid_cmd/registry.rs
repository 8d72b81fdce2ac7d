//! The bench's [`Registry`] over gRPC: the blocking workflow code of `okey-hid` calls these
//! methods; each one runs one or two RPCs on a private single-threaded tokio runtime.
//!
//! Error mapping: statuses that mean "the server said no" (`INVALID_ARGUMENT`,
//! `FAILED_PRECONDITION`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`,
//! `UNAUTHENTICATED`) become [`RegistryError::Refused`]; everything else (transport failures,
//! `UNAVAILABLE`, `INTERNAL`, `UNIMPLEMENTED`...) becomes [`RegistryError::Unavailable`].

use okey_hid::bench::{InitRequest, IssuedSeed, OtpKind, Registry, RegistryError, TokenIdentity};
use okey_hid::secret::{Digits, OtpCode, OtpSecret};
use okey_server::proto;
use tokio::runtime::Runtime;
use zeroize::{Zeroize, Zeroizing};

use crate::client::{ClientArgs, Clients};

/// Maps a gRPC status to the bench's two kinds of server error.
pub fn registry_error(status: &tonic::Status) -> RegistryError {
    use tonic::Code;
    let text = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated => RegistryError::Refused(text),
        _ => RegistryError::Unavailable(text),
    }
}

/// The server side of the bench workflows, reached over gRPC.
pub struct GrpcRegistry {
    rt: Runtime,
    clients: Clients,
}

impl GrpcRegistry {
    /// Connects and authenticates (blocking). Must not be called from inside a tokio runtime.
    pub fn connect(args: &ClientArgs) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let clients = rt.block_on(args.connect())?;
        Ok(Self { rt, clients })
    }

    fn token(&mut self, token: &TokenIdentity) -> Result<proto::Token, RegistryError> {
        let serial = token.to_string();
        self.rt
            .block_on(
                self.clients
                    .tokens
                    .get_token(proto::GetTokenRequest { serial }),
            )
            .map(tonic::Response::into_inner)
            .map_err(|s| registry_error(&s))
    }
}

/// Takes the seed and parameters out of the server's answer (the answer's seed buffer is left
/// empty; the copy lives only in the returned, zeroizing [`OtpSecret`]).
fn seed_from(
    response: &mut proto::BeginInitialisationResponse,
) -> Result<IssuedSeed, RegistryError> {
    // Take the seed out of the message first so that every path below wipes it.
    let seed = Zeroizing::new(std::mem::take(&mut response.seed));
    let token = response
        .token
        .as_ref()
        .ok_or_else(|| RegistryError::Unavailable("the server sent no token".into()))?;
    let otp = token.otp.clone().unwrap_or_default();
    let kind = match proto::OtpType::try_from(otp.r#type) {
        Ok(proto::OtpType::Hotp | proto::OtpType::Unspecified) => OtpKind::Hotp,
        Ok(proto::OtpType::Totp) => OtpKind::Totp { step: otp.step },
        _ => {
            return Err(RegistryError::Unavailable(
                "the server created a token of a type the bench cannot write".into(),
            ));
        }
    };
    let algorithm = proto::HashAlgorithm::try_from(otp.algorithm);
    if !matches!(
        algorithm,
        Ok(proto::HashAlgorithm::Sha1 | proto::HashAlgorithm::Unspecified)
    ) {
        return Err(RegistryError::Unavailable(
            "the server created a token with another hash than HMAC-SHA1".into(),
        ));
    }
    if matches!(kind, OtpKind::Totp { .. }) && otp.t0 != 0 {
        return Err(RegistryError::Unavailable(
            "the server created a TOTP token with T0 other than 0".into(),
        ));
    }
    let digits = Digits::from_count(otp.digits).ok_or_else(|| {
        RegistryError::Unavailable(format!(
            "the server created a token with {} digits; devices show 6 or 8",
            otp.digits
        ))
    })?;
    let secret = OtpSecret::from_slice(&seed)
        .map_err(|e| RegistryError::Unavailable(format!("unusable seed: {e}")))?;
    Ok(IssuedSeed {
        secret,
        kind,
        digits,
        initial_counter: token.counter,
    })
}

fn otp_parameters(request: &InitRequest) -> proto::OtpParameters {
    let (r#type, step) = match request.kind {
        OtpKind::Hotp => (proto::OtpType::Hotp, 0),
        OtpKind::Totp { step } => (proto::OtpType::Totp, step),
    };
    proto::OtpParameters {
        r#type: r#type as i32,
        algorithm: proto::HashAlgorithm::Sha1 as i32,
        digits: request.digits.count(),
        step,
        t0: 0,
        ocra_suite: String::new(),
    }
}

impl Registry for GrpcRegistry {
    fn begin_init(&mut self, request: &InitRequest) -> Result<IssuedSeed, RegistryError> {
        let serial = request.token.to_string();
        let call = proto::BeginInitialisationRequest {
            serial: serial.clone(),
            otp: Some(otp_parameters(request)),
            description: format!("{} {} (USB bench)", request.token.family, request.slot),
        };
        let mut response = self
            .rt
            .block_on(self.clients.tokens.begin_initialisation(call))
            .map(tonic::Response::into_inner)
            .map_err(|s| registry_error(&s))?;
        let issued = seed_from(&mut response);
        response.seed.zeroize();
        if let Err(e) = &issued {
            // The server released a seed the bench will not write: void it now.
            let _ = self.abort_init(&request.token, &e.to_string());
        }
        issued
    }

    fn confirm_init(
        &mut self,
        token: &TokenIdentity,
        code: &OtpCode,
        _host_time: u64,
    ) -> Result<(), RegistryError> {
        // The server checks the code against its own clock (TOTP); the host's time is only
        // what the device clock was set to.
        let code = code.expose_text();
        let call = proto::CompleteInitialisationRequest {
            serial: token.to_string(),
            code: code.as_str().to_owned(),
        };
        let result = self
            .rt
            .block_on(self.clients.tokens.complete_initialisation(call));
        let token = result.map_err(|s| registry_error(&s))?.into_inner();
        if token.status == proto::TokenStatus::Active as i32 {
            Ok(())
        } else {
            Err(RegistryError::Refused(
                "the server did not activate the token".into(),
            ))
        }
    }

    fn abort_init(&mut self, token: &TokenIdentity, reason: &str) -> Result<(), RegistryError> {
        tracing::info!(%token, reason, "aborting a bench initialisation");
        self.rt
            .block_on(self.clients.tokens.abort_initialisation(proto::TokenRef {
                serial: token.to_string(),
            }))
            .map(|_| ())
            .map_err(|s| registry_error(&s))
    }

    fn hotp_counter(&mut self, token: &TokenIdentity) -> Result<u64, RegistryError> {
        Ok(self.token(token)?.counter)
    }

    fn resync_hotp(
        &mut self,
        token: &TokenIdentity,
        first: &OtpCode,
        second: &OtpCode,
    ) -> Result<u64, RegistryError> {
        let (a, b) = (first.expose_text(), second.expose_text());
        let call = proto::ResyncTokenRequest {
            serial: token.to_string(),
            first_code: a.as_str().to_owned(),
            second_code: b.as_str().to_owned(),
        };
        self.rt
            .block_on(self.clients.tokens.resync_token(call))
            .map(|r| r.into_inner().counter)
            .map_err(|s| registry_error(&s))
    }

    fn record_drift(
        &mut self,
        token: &TokenIdentity,
        code: &OtpCode,
        _host_time: u64,
    ) -> Result<i64, RegistryError> {
        // Verify with the server's normal TOTP window: an accepted code moves the token's
        // recorded drift to the step it matched.
        let text = code.expose_text();
        let call = proto::VerifyRequest {
            subject: Some(proto::Subject {
                kind: Some(proto::subject::Kind::Serial(token.to_string())),
            }),
            passcode: text.as_str().to_owned(),
            transaction_id: String::new(),
            client: Some(proto::ClientInfo {
                nas_identifier: "okey-hid-bench".into(),
                ..Default::default()
            }),
        };
        let answer = self
            .rt
            .block_on(self.clients.auth.verify(call))
            .map_err(|s| registry_error(&s))?
            .into_inner();
        if answer.result != proto::VerifyResult::Accept as i32 {
            return Err(RegistryError::Refused(format!(
                "the server did not accept the device's code ({}): the clock is outside the server's window or the token is not active",
                answer.reason
            )));
        }
        Ok(self.token(token)?.drift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: tonic::Code, refused: bool) {
        let e = registry_error(&tonic::Status::new(code, "x"));
        assert_eq!(matches!(e, RegistryError::Refused(_)), refused, "{code:?}");
        assert_eq!(
            matches!(e, RegistryError::Unavailable(_)),
            !refused,
            "{code:?}"
        );
    }

    #[test]
    fn statuses_map_to_refused_or_unavailable() {
        use tonic::Code::*;
        for c in [
            InvalidArgument,
            FailedPrecondition,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            Unauthenticated,
        ] {
            check(c, true);
        }
        for c in [
            Unavailable,
            Internal,
            Unimplemented,
            DeadlineExceeded,
            Unknown,
            ResourceExhausted,
            Aborted,
            Cancelled,
            DataLoss,
        ] {
            check(c, false);
        }
    }

    #[test]
    fn otp_parameters_follow_the_request() {
        use okey_hid::bench::SlotRef;
        use okey_hid::nitrokey::Slot;
        use okey_hid::transport::Family;
        let request = InitRequest {
            token: TokenIdentity {
                family: Family::NitrokeyPro,
                serial: 0xABCD,
            },
            kind: OtpKind::Totp { step: 60 },
            digits: Digits::Eight,
            slot: SlotRef::Nitrokey(Slot::Totp(2)),
            max_secret_len: 40,
            counter_multiple_of: 1,
        };
        let p = otp_parameters(&request);
        assert_eq!(p.r#type, proto::OtpType::Totp as i32);
        assert_eq!(p.algorithm, proto::HashAlgorithm::Sha1 as i32);
        assert_eq!((p.digits, p.step, p.t0), (8, 60, 0));
        assert_eq!(request.token.to_string(), "NK-0000ABCD");
    }

    fn response(otp: proto::OtpParameters, counter: u64) -> proto::BeginInitialisationResponse {
        proto::BeginInitialisationResponse {
            token: Some(proto::Token {
                serial: "NK-00000001".into(),
                otp: Some(otp),
                counter,
                ..Default::default()
            }),
            seed: b"12345678901234567890".to_vec(),
        }
    }

    fn hotp(digits: u32) -> proto::OtpParameters {
        proto::OtpParameters {
            r#type: proto::OtpType::Hotp as i32,
            algorithm: proto::HashAlgorithm::Sha1 as i32,
            digits,
            ..Default::default()
        }
    }

    #[test]
    fn the_released_seed_moves_into_the_secret_and_leaves_the_message_empty() {
        let mut r = response(hotp(8), 32);
        let issued = seed_from(&mut r).expect("seed");
        assert!(r.seed.is_empty());
        assert_eq!(issued.secret.expose_bytes(), b"12345678901234567890");
        assert_eq!(issued.kind, OtpKind::Hotp);
        assert_eq!(issued.digits, Digits::Eight);
        assert_eq!(issued.initial_counter, 32);
        let totp = proto::OtpParameters {
            r#type: proto::OtpType::Totp as i32,
            step: 60,
            ..hotp(6)
        };
        let issued = seed_from(&mut response(totp, 0)).expect("seed");
        assert_eq!(issued.kind, OtpKind::Totp { step: 60 });
    }

    #[test]
    fn parameters_a_device_cannot_hold_are_refused() {
        for otp in [
            hotp(7),
            proto::OtpParameters {
                algorithm: proto::HashAlgorithm::Sha256 as i32,
                ..hotp(6)
            },
            proto::OtpParameters {
                r#type: proto::OtpType::Ocra as i32,
                ..hotp(6)
            },
            proto::OtpParameters {
                r#type: proto::OtpType::Totp as i32,
                step: 30,
                t0: 5,
                ..hotp(6)
            },
        ] {
            let mut r = response(otp, 0);
            assert!(seed_from(&mut r).is_err());
            assert!(r.seed.is_empty());
        }
        let mut r = response(hotp(6), 0);
        r.seed = vec![1; 41];
        assert!(seed_from(&mut r).is_err());
        let mut r = response(hotp(6), 0);
        r.token = None;
        assert!(seed_from(&mut r).is_err());
    }
}

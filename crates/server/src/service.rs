//! The gRPC handlers. Each one authenticates and authorises its caller for exactly one
//! [`Operation`], turns the request into checked values, calls the store, and maps the answer.

use std::sync::Arc;
use std::time::Instant;

use okey_domain::{Operation, Role, fold_holder, validate_principal_name, validate_serial};
use okey_otp::{Algorithm, OcraSuite};
use okey_store::{
    Actor, NewToken, OtpKind, Store, Subject, TokenFilter, TokenInfo, TokenKind, TokenStatus,
    VerifyOutcome, VerifyRequest,
};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::callers::{Callers, Principal, generate_key, hash_key};
use crate::challenges::{ChallengeError, Challenges};
use crate::clock;
use crate::config::ServeConfig;
use crate::metrics::{Metrics, VerifyResultKind};
use crate::proto;
use crate::seed_files::{self, ChunkReader, ChunkWriter, Format, Parsed, Refused};
use crate::status::{invalid, is_not_found, shown, store_status, within};

/// Longest passcode accepted (a 32-character PIN and a 10-digit code, or an OCRA `-0` response).
pub(crate) const MAX_PASSCODE_LEN: usize = 160;
/// Largest page of a token listing.
const MAX_PAGE: u32 = 1000;
/// Most anchors one `VerifyAuditChain` call checks (the CLI sends a longer file in parts).
pub const MAX_ANCHORS: usize = 50_000;
/// Shortest seed accepted (RFC 4226 section 4: at least 128 bits; the store refuses shorter).
const MIN_SEED_LEN: usize = 16;
/// Most tokens in one import request.
const MAX_IMPORT: usize = 100_000;
/// Largest seed file accepted.
const MAX_SEED_FILE: usize = 1 << 30;

/// Shared state of all services.
pub(crate) struct Okey {
    pub(crate) store: Store,
    pub(crate) callers: Arc<Callers>,
    pub(crate) challenges: Challenges,
    pub(crate) metrics: Arc<Metrics>,
    /// The mail set-up, when an `[smtp]` relay is configured.
    pub(crate) mail: Option<Arc<crate::mail::MailContext>>,
    /// The `[master_key]` table, for online rotations.
    pub(crate) master_key: crate::config::MasterKeyConfig,
    /// The `[requests]` table.
    pub(crate) requests: crate::config::RequestsConfig,
    /// How long a temporary key works (`temporary_key_seconds`).
    pub(crate) temporary_key_seconds: u64,
}

impl Okey {
    pub(crate) fn new(
        store: Store,
        config: &ServeConfig,
        metrics: Arc<Metrics>,
        mail: Option<Arc<crate::mail::MailContext>>,
    ) -> Self {
        Okey {
            callers: Arc::new(Callers::new(store.clone(), metrics.clone())),
            challenges: Challenges::new(config.challenge_ttl),
            store,
            metrics,
            mail,
            master_key: config.master_key.clone(),
            requests: config.requests.clone(),
            temporary_key_seconds: config.temporary_key_seconds,
        }
    }
}

impl Okey {
    /// The audit actor of a support-centre operation (unlock, resync). A portal caller does it
    /// only for a person whose functions make them the support centre (refused, counted and
    /// audited otherwise); other callers hold a role the operation allows.
    pub(crate) async fn support_desk(
        &self,
        p: &Principal,
        operation: Operation,
    ) -> Result<Actor, Status> {
        if !p.roles.contains(&Role::Portal) {
            return Ok(actor_of(p));
        }
        let acting = self.acting(p)?;
        if acting.central.contains(&okey_domain::Party::SupportCentre) {
            return Ok(crate::lifecycle::actor_of(p));
        }
        Err(self
            .callers
            .deny(
                p,
                operation,
                format!(
                    "{} acts for {}, who is not of the support centre",
                    p.name,
                    acting.person.as_deref().unwrap_or("nobody")
                ),
            )
            .await)
    }
}

pub(crate) fn actor_of(principal: &Principal) -> Actor {
    Actor {
        name: principal.name.clone(),
        role: principal.role_names(),
    }
}

fn subject_of(subject: Option<proto::Subject>) -> Result<(String, bool), Status> {
    match subject.and_then(|s| s.kind) {
        Some(proto::subject::Kind::User(user)) => Ok((fold_holder(&user).map_err(invalid)?, true)),
        Some(proto::subject::Kind::Serial(serial)) => {
            validate_serial(&serial).map_err(invalid)?;
            Ok((serial, false))
        }
        None => Err(Status::invalid_argument(
            "a subject (user or serial) is required",
        )),
    }
}

fn client_of(client: Option<&proto::ClientInfo>) -> String {
    let Some(c) = client else {
        return String::new();
    };
    // Free text from the front end: keep it short and printable before it reaches a log.
    let clean = |s: &str| {
        s.chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect::<String>()
    };
    format!(
        "nas={} addr={} station={}",
        clean(&c.nas_identifier),
        clean(&c.client_address),
        clean(&c.calling_station)
    )
}

fn algorithm_of(a: i32) -> Result<Algorithm, Status> {
    match proto::HashAlgorithm::try_from(a) {
        Ok(proto::HashAlgorithm::Unspecified | proto::HashAlgorithm::Sha1) => Ok(Algorithm::Sha1),
        Ok(proto::HashAlgorithm::Sha256) => Ok(Algorithm::Sha256),
        Ok(proto::HashAlgorithm::Sha512) => Ok(Algorithm::Sha512),
        Err(_) => Err(Status::invalid_argument("unknown hash algorithm")),
    }
}

fn algorithm_to_proto(a: Algorithm) -> proto::HashAlgorithm {
    match a {
        Algorithm::Sha1 => proto::HashAlgorithm::Sha1,
        Algorithm::Sha256 => proto::HashAlgorithm::Sha256,
        Algorithm::Sha512 => proto::HashAlgorithm::Sha512,
    }
}

/// Checked OTP parameters: kind, algorithm, digits. A field that does not apply to the type
/// (a TOTP step or T0 on an HOTP token, an OCRA suite on an HOTP or TOTP one, a step, T0,
/// digits or algorithm beside an OCRA suite that says otherwise) is refused, not dropped.
fn otp_of(p: Option<&proto::OtpParameters>) -> Result<(OtpKind, Algorithm, u8), Status> {
    let default = proto::OtpParameters::default();
    let p = p.unwrap_or(&default);
    let mut algorithm = algorithm_of(p.algorithm)?;
    let mut digits = if p.digits == 0 { 6 } else { p.digits };
    let no_suite = |kind: &str| {
        if p.ocra_suite.is_empty() {
            Ok(())
        } else {
            Err(Status::invalid_argument(format!(
                "an {kind} token has no OCRA suite: leave ocra_suite empty"
            )))
        }
    };
    let no_time = |kind: &str| {
        if p.step == 0 && p.t0 == 0 {
            Ok(())
        } else {
            Err(Status::invalid_argument(format!(
                "an {kind} token has no TOTP step or T0: leave step and t0 at 0"
            )))
        }
    };
    let kind = match proto::OtpType::try_from(p.r#type) {
        Ok(proto::OtpType::Unspecified | proto::OtpType::Hotp) => {
            no_suite("HOTP")?;
            no_time("HOTP")?;
            OtpKind::Hotp
        }
        Ok(proto::OtpType::Totp) => {
            no_suite("TOTP")?;
            let step = if p.step == 0 { 30 } else { p.step };
            if step > 3600 {
                return Err(Status::invalid_argument(
                    "the TOTP step must be 1 to 3600 seconds",
                ));
            }
            OtpKind::Totp { step, t0: p.t0 }
        }
        Ok(proto::OtpType::Ocra) => {
            if p.ocra_suite.len() > 64 {
                return Err(Status::invalid_argument(
                    "an OCRA suite has at most 64 characters",
                ));
            }
            no_time("OCRA")?;
            let suite: OcraSuite = p.ocra_suite.parse().map_err(invalid)?;
            let suite_digits = suite.digits().map_or(0, |d| u32::from(d.get()));
            if p.digits != 0 && p.digits != suite_digits {
                return Err(Status::invalid_argument(
                    "an OCRA token's digits are its suite's: leave digits at 0 or give the suite's",
                ));
            }
            if p.algorithm != proto::HashAlgorithm::Unspecified as i32
                && algorithm != suite.algorithm()
            {
                return Err(Status::invalid_argument(
                    "an OCRA token's hash is its suite's: leave algorithm unset or give the suite's",
                ));
            }
            algorithm = suite.algorithm();
            digits = suite_digits;
            OtpKind::Ocra {
                suite: suite.as_str().to_owned(),
            }
        }
        Err(_) => return Err(Status::invalid_argument("unknown OTP type")),
    };
    if !matches!(kind, OtpKind::Ocra { .. }) && !(6..=10).contains(&digits) {
        return Err(Status::invalid_argument("digits must be 6 to 10"));
    }
    let digits =
        u8::try_from(digits).map_err(|_| Status::invalid_argument("digits must be 6 to 10"))?;
    Ok((kind, algorithm, digits))
}

/// The counter of an imported token: only HOTP tokens and OCRA suites with a counter have one.
fn counter_of(otp: &OtpKind, counter: u64) -> Result<u64, Status> {
    let has_counter = match otp {
        OtpKind::Hotp => true,
        OtpKind::Totp { .. } => false,
        OtpKind::Ocra { suite } => suite.parse::<OcraSuite>().is_ok_and(|s| s.has_counter()),
    };
    if counter != 0 && !has_counter {
        return Err(Status::invalid_argument(
            "this token has no counter (TOTP, or an OCRA suite without C): leave counter at 0",
        ));
    }
    Ok(counter)
}

/// Longest client information field: a RADIUS attribute's value is at most 253 bytes.
const MAX_CLIENT_FIELD: usize = 253;

fn check_client(client: Option<&proto::ClientInfo>) -> Result<(), Status> {
    if let Some(c) = client
        && [&c.nas_identifier, &c.client_address, &c.calling_station]
            .iter()
            .any(|f| f.len() > MAX_CLIENT_FIELD)
    {
        return Err(Status::invalid_argument(
            "a client information field has at most 253 bytes (a RADIUS attribute)",
        ));
    }
    Ok(())
}

fn kind_of(k: i32, default: TokenKind) -> Result<TokenKind, Status> {
    match proto::TokenKind::try_from(k) {
        Ok(proto::TokenKind::Unspecified) => Ok(default),
        Ok(proto::TokenKind::Hardware) => Ok(TokenKind::Hardware),
        Ok(proto::TokenKind::Software) => Ok(TokenKind::Software),
        Err(_) => Err(Status::invalid_argument("unknown token kind")),
    }
}

fn status_of(s: i32) -> Result<Option<TokenStatus>, Status> {
    Ok(match proto::TokenStatus::try_from(s) {
        Ok(proto::TokenStatus::Unspecified) => None,
        Ok(proto::TokenStatus::Initialising) => Some(TokenStatus::Initialising),
        Ok(proto::TokenStatus::Pending) => Some(TokenStatus::Pending),
        Ok(proto::TokenStatus::Active) => Some(TokenStatus::Active),
        Ok(proto::TokenStatus::Disabled) => Some(TokenStatus::Disabled),
        Ok(proto::TokenStatus::Revoked) => Some(TokenStatus::Revoked),
        Err(_) => return Err(Status::invalid_argument("unknown token status")),
    })
}

pub(crate) fn token_to_proto(t: &TokenInfo) -> proto::Token {
    let (otp_type, step, t0, ocra_suite) = match &t.otp {
        OtpKind::Hotp => (proto::OtpType::Hotp, 0, 0, String::new()),
        OtpKind::Totp { step, t0 } => (proto::OtpType::Totp, *step, *t0, String::new()),
        OtpKind::Ocra { suite } => (proto::OtpType::Ocra, 0, 0, suite.clone()),
    };
    proto::Token {
        serial: t.serial.clone(),
        kind: match t.kind {
            TokenKind::Hardware => proto::TokenKind::Hardware,
            TokenKind::Software => proto::TokenKind::Software,
        } as i32,
        otp: Some(proto::OtpParameters {
            r#type: otp_type as i32,
            algorithm: algorithm_to_proto(t.algorithm) as i32,
            digits: u32::from(t.digits),
            step,
            t0,
            ocra_suite,
        }),
        status: match t.status {
            TokenStatus::Initialising => proto::TokenStatus::Initialising,
            TokenStatus::Pending => proto::TokenStatus::Pending,
            TokenStatus::Active => proto::TokenStatus::Active,
            TokenStatus::Disabled => proto::TokenStatus::Disabled,
            TokenStatus::Revoked => proto::TokenStatus::Revoked,
        } as i32,
        holder: t.holder.clone().unwrap_or_default(),
        description: t.description.clone().unwrap_or_default(),
        counter: t.counter,
        last_step: t.last_step.unwrap_or(0),
        drift: t.drift,
        failures: t.failures,
        locked: t.locked,
        locked_until: t.locked_until.unwrap_or(0),
        has_pin: t.has_pin,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

pub(crate) fn random_seed(algorithm: Algorithm) -> Result<Zeroizing<Vec<u8>>, Status> {
    let mut seed = Zeroizing::new(vec![0u8; algorithm.output_len()]);
    getrandom::fill(seed.as_mut_slice())
        .map_err(|_| Status::unavailable("the system random generator failed"))?;
    Ok(seed)
}

pub(crate) fn random_serial() -> Result<String, Status> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)
        .map_err(|_| Status::unavailable("the system random generator failed"))?;
    Ok(format!("OK{:010}", u64::from_be_bytes(b) % 10_000_000_000))
}

fn optional(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn check_description(d: &str) -> Result<(), Status> {
    if d.len() > 256 || d.chars().any(char::is_control) {
        return Err(Status::invalid_argument(
            "a description has at most 256 printable characters",
        ));
    }
    Ok(())
}

fn reply_message(accepted: bool) -> &'static str {
    if accepted {
        "Access granted"
    } else {
        "Authentication failed"
    }
}

pub(crate) fn verify_response(outcome: &VerifyOutcome) -> proto::VerifyResponse {
    proto::VerifyResponse {
        result: if outcome.accepted {
            proto::VerifyResult::Accept
        } else {
            proto::VerifyResult::Reject
        } as i32,
        serial: if outcome.accepted {
            outcome.serial.clone().unwrap_or_default()
        } else {
            String::new()
        },
        transaction_id: String::new(),
        challenge: String::new(),
        reason: outcome.reason.as_str().to_owned(),
        reply_message: reply_message(outcome.accepted).to_owned(),
    }
}

fn reject(reason: &str) -> proto::VerifyResponse {
    proto::VerifyResponse {
        result: proto::VerifyResult::Reject as i32,
        reason: reason.to_owned(),
        reply_message: reply_message(false).to_owned(),
        ..Default::default()
    }
}

impl Okey {
    /// The verify path of gRPC `Verify` and of the RADIUS front end.
    pub(crate) async fn verify_inner(
        &self,
        principal: &Principal,
        req: proto::VerifyRequest,
    ) -> Result<proto::VerifyResponse, Status> {
        let (subject, is_user) = subject_of(req.subject)?;
        check_client(req.client.as_ref())?;
        let client = client_of(req.client.as_ref());
        let passcode = Zeroizing::new(req.passcode);
        if passcode.len() > MAX_PASSCODE_LEN {
            return Err(Status::invalid_argument("the passcode is too long"));
        }
        let actor = actor_of(principal);
        let now = clock::now();

        if !req.transaction_id.is_empty() {
            return self
                .answer_challenge(
                    &actor,
                    &subject,
                    is_user,
                    &req.transaction_id,
                    &passcode,
                    now,
                    &client,
                )
                .await;
        }
        if passcode.is_empty() {
            // An empty passcode asks for a challenge when the subject has a challenge-response
            // token; otherwise it is simply wrong. Issuing one is TriggerChallenge's work, and
            // needs its roles.
            self.callers
                .require(principal, Operation::TriggerChallenge)
                .await?;
            if let Some((serial, suite)) = self.ocra_token_of(&subject, is_user)? {
                let (tx, challenge) = self
                    .challenges
                    .issue(&self.store, &serial, &suite, now)
                    .await
                    .map_err(store_status)?
                    .map_err(challenge_status)?;
                self.audit(
                    &actor,
                    "challenge",
                    &subject,
                    Some(&serial),
                    "challenge",
                    "issued",
                    now,
                )
                .await;
                return Ok(proto::VerifyResponse {
                    result: proto::VerifyResult::Challenge as i32,
                    serial,
                    transaction_id: tx,
                    challenge: challenge.question,
                    reason: "challenge_issued".to_owned(),
                    reply_message: "Enter the response shown by your key".to_owned(),
                });
            }
            return Err(Status::invalid_argument(if is_user {
                "the passcode is empty, and this user has no challenge-response key to ask a \
                 challenge for"
            } else {
                "the passcode is empty, and this token is not a challenge-response key"
            }));
        }
        let subject_ref = if is_user {
            Subject::User(&subject)
        } else {
            Subject::Serial(&subject)
        };
        let outcome = self
            .store
            .verify(VerifyRequest {
                subject: subject_ref,
                passcode: &passcode,
                now,
                actor: &actor,
                client: &client,
            })
            .await
            .map_err(store_status)?;
        Ok(verify_response(&outcome))
    }

    /// The first OCRA token of the subject that may be challenged.
    fn ocra_token_of(
        &self,
        subject: &str,
        is_user: bool,
    ) -> Result<Option<(String, OcraSuite)>, Status> {
        let candidates: Vec<TokenInfo> = if is_user {
            let filter = TokenFilter {
                holder: Some(subject.to_owned()),
                status: Some(TokenStatus::Active),
                ..TokenFilter::default()
            };
            self.store
                .list_tokens(&filter, None, 100)
                .map_err(store_status)?
        } else {
            match self.store.token(subject) {
                Ok(t) => vec![t],
                Err(e) if is_not_found(&e) => vec![],
                Err(e) => return Err(store_status(e)),
            }
        };
        for t in candidates {
            if t.status != TokenStatus::Active {
                continue;
            }
            if let OtpKind::Ocra { suite } = &t.otp {
                let suite: OcraSuite = suite
                    .parse()
                    .map_err(|_| Status::internal("a stored OCRA suite does not parse"))?;
                return Ok(Some((t.serial.clone(), suite)));
            }
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer_challenge(
        &self,
        actor: &Actor,
        subject: &str,
        is_user: bool,
        transaction: &str,
        response: &str,
        now: u64,
        client: &str,
    ) -> Result<proto::VerifyResponse, Status> {
        if transaction.len() > 64 {
            return Err(Status::invalid_argument("the transaction id is too long"));
        }
        let taken = self
            .challenges
            .take(&self.store, transaction, now)
            .await
            .map_err(store_status)?;
        let challenge = match taken {
            Ok(c) => c,
            Err(e) => {
                let reason = match e {
                    ChallengeError::Expired => "challenge_expired",
                    ChallengeError::Used => "challenge_used",
                    ChallengeError::Replaced => "challenge_replaced",
                    ChallengeError::Unknown | ChallengeError::Full => "unknown_transaction",
                };
                self.audit(actor, "verify", subject, None, "reject", reason, now)
                    .await;
                return Ok(reject(reason));
            }
        };
        // The challenge is bound to its token: the subject must be that token or its holder.
        let bound = if is_user {
            self.store
                .token(&challenge.serial)
                .map(|t| t.holder.as_deref() == Some(subject))
                .unwrap_or(false)
        } else {
            challenge.serial == subject
        };
        if !bound {
            self.audit(
                actor,
                "verify",
                subject,
                Some(&challenge.serial),
                "reject",
                "challenge_not_for_subject",
                now,
            )
            .await;
            return Ok(reject("challenge_not_for_subject"));
        }
        let outcome = self
            .store
            .verify_ocra(
                &challenge.serial,
                &challenge.question,
                response,
                now,
                actor,
                client,
            )
            .await
            .map_err(store_status)?;
        Ok(verify_response(&outcome))
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        subject: &str,
        serial: Option<&str>,
        result: &str,
        reason: &str,
        now: u64,
    ) {
        let entry = okey_store::AuditEntry {
            actor: actor.name.clone(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            serial: serial.map(str::to_owned),
            result: result.to_owned(),
            reason: reason.to_owned(),
            at: now,
        };
        if let Err(e) = self.store.audit(entry).await {
            tracing::error!(error = %e, "audit append failed");
        }
    }
}

fn challenge_status(e: ChallengeError) -> Status {
    match e {
        ChallengeError::Full => {
            Status::resource_exhausted("too many outstanding challenges; retry shortly")
        }
        other => Status::failed_precondition(other.to_string()),
    }
}

#[tonic::async_trait]
impl proto::auth_service_server::AuthService for Arc<Okey> {
    // The hot path's span is at debug level: at the default info level it is not even built.
    #[tracing::instrument(level = "debug", skip_all, fields(op = "Verify"))]
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let started = Instant::now();
        let principal = self.callers.authorize(&request, Operation::Verify).await?;
        let result = self.verify_inner(&principal, request.into_inner()).await;
        let kind = match &result {
            Ok(r) if r.result == proto::VerifyResult::Accept as i32 => VerifyResultKind::Accept,
            Ok(r) if r.result == proto::VerifyResult::Challenge as i32 => {
                VerifyResultKind::Challenge
            }
            Ok(_) => VerifyResultKind::Reject,
            Err(_) => VerifyResultKind::Error,
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.metrics.record_verify(kind, micros);
        result.map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(op = "TriggerChallenge"))]
    async fn trigger_challenge(
        &self,
        request: Request<proto::TriggerChallengeRequest>,
    ) -> Result<Response<proto::TriggerChallengeResponse>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::TriggerChallenge)
            .await?;
        let req = request.into_inner();
        let (subject, is_user) = subject_of(req.subject)?;
        check_client(req.client.as_ref())?;
        let now = clock::now();
        let Some((serial, suite)) = self.ocra_token_of(&subject, is_user)? else {
            return Err(Status::failed_precondition(
                "the subject has no active challenge-response token",
            ));
        };
        let (tx, challenge) = self
            .challenges
            .issue(&self.store, &serial, &suite, now)
            .await
            .map_err(store_status)?
            .map_err(challenge_status)?;
        self.audit(
            &actor_of(&principal),
            "challenge",
            &subject,
            Some(&serial),
            "challenge",
            "issued",
            now,
        )
        .await;
        Ok(Response::new(proto::TriggerChallengeResponse {
            transaction_id: tx,
            challenge: challenge.question,
            serial,
            expires_in: u32::try_from(self.challenges.ttl()).unwrap_or(u32::MAX),
        }))
    }
}

fn serial_arg(serial: &str) -> Result<(), Status> {
    validate_serial(serial).map_err(invalid)
}

#[tonic::async_trait]
impl proto::token_service_server::TokenService for Arc<Okey> {
    #[tracing::instrument(skip_all, fields(op = "RotateMasterKey"))]
    async fn rotate_master_key(
        &self,
        request: Request<proto::RotateMasterKeyRequest>,
    ) -> Result<Response<proto::RotateMasterKeyResponse>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::RotateMasterKey)
            .await?;
        self.rotate_master_key_checked(request.into_inner(), actor_of(&principal))
            .await
            .map(Response::new)
    }

    type ExportStockStream =
        tokio_stream::wrappers::ReceiverStream<Result<proto::ExportStockChunk, Status>>;

    #[tracing::instrument(skip_all, fields(op = "ExportStock"))]
    async fn export_stock(
        &self,
        request: Request<proto::ExportStockRequest>,
    ) -> Result<Response<Self::ExportStockStream>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::ExportStock)
            .await?;
        let req = request.into_inner();
        if req.serials.len() > MAX_IMPORT {
            return Err(Status::invalid_argument(
                "an export names at most 100,000 serials",
            ));
        }
        for s in &req.serials {
            serial_arg(s)?;
        }
        let password = Zeroizing::new(req.password);
        let psk = Zeroizing::new(req.pre_shared_key);
        let protection = match (password.is_empty(), psk.is_empty()) {
            (false, true) if password.chars().count() >= 12 => {
                okey_intake::ExportProtection::password(password.clone())
            }
            (false, true) => {
                return Err(Status::invalid_argument(
                    "an export password has at least 12 characters",
                ));
            }
            (true, false) if psk.len() == 32 => {
                okey_intake::ExportProtection::pre_shared_key(psk.clone(), "okey-stock")
            }
            (true, false) => {
                return Err(Status::invalid_argument(
                    "a pre-shared key for export is 32 bytes (AES-256)",
                ));
            }
            _ => {
                return Err(Status::invalid_argument(
                    "give exactly one of a password or a pre-shared key",
                ));
            }
        };
        let serials = (!req.serials.is_empty()).then_some(req.serials);
        let stock = self
            .store
            .stock_seeds(serials.as_deref())
            .map_err(store_status)?;
        if stock.is_empty() {
            return Err(Status::failed_precondition(
                "there is no unassigned token to export",
            ));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let store = self.store.clone();
        let actor = actor_of(&principal);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            // Every seed that leaves is on record before its first byte does.
            let now = clock::now();
            for s in &stock {
                let serial = &s.token.serial;
                let entry = okey_store::AuditEntry {
                    actor: actor.name.clone(),
                    action: "stock.export".into(),
                    subject: serial.clone(),
                    serial: Some(serial.clone()),
                    result: "ok".into(),
                    reason: "copied".into(),
                    at: now,
                };
                if let Err(e) = runtime.block_on(store.audit(entry)) {
                    tracing::error!(error = %e, "audit append failed; the export is refused");
                    let _ = tx.blocking_send(Err(Status::unavailable(
                        "the export could not be recorded in the audit log; nothing was sent",
                    )));
                    return;
                }
            }
            let packages: Vec<okey_intake::KeyPackage> =
                stock.into_iter().map(seed_files::package_of).collect();
            let writer = ChunkWriter::new(tx.clone(), |data| proto::ExportStockChunk { data });
            let written = okey_intake::export(writer, protection, &packages)
                .map_err(|e| e.to_string())
                .and_then(|(mut w, _)| std::io::Write::flush(&mut w).map_err(|e| e.to_string()));
            drop(packages);
            if let Err(why) = written {
                tracing::warn!(%why, "stock export stopped");
                let _ = tx.blocking_send(Err(Status::aborted("the export stopped before the end")));
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    #[tracing::instrument(skip_all, fields(op = "CreateToken"))]
    async fn create_token(
        &self,
        request: Request<proto::CreateTokenRequest>,
    ) -> Result<Response<proto::CreateTokenResponse>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::CreateToken)
            .await?;
        let mut req = request.into_inner();
        let kind = kind_of(req.kind, TokenKind::Software)?;
        if kind == TokenKind::Hardware {
            return Err(Status::failed_precondition(
                "hardware tokens are created on the USB bench (BeginInitialisation) or imported from the vendor's seed file",
            ));
        }
        let (otp, algorithm, digits) = otp_of(req.otp.as_ref())?;
        if matches!(otp, OtpKind::Ocra { .. }) {
            return Err(Status::invalid_argument("software tokens are HOTP or TOTP"));
        }
        if !req.holder.is_empty() {
            req.holder = fold_holder(&req.holder).map_err(invalid)?;
            // A token created for a holder is also an assignment: without that right, a
            // creator would hold a working credential of anyone it names.
            self.callers
                .require(&principal, Operation::AssignToken)
                .await?;
        }
        check_description(&req.description)?;
        if req.issuer.len() > 64 || req.account.len() > 128 {
            return Err(Status::invalid_argument(
                "issuer has at most 64 and account at most 128 characters",
            ));
        }
        let serial = if req.serial.is_empty() {
            random_serial()?
        } else {
            req.serial.clone()
        };
        serial_arg(&serial)?;
        let seed = random_seed(algorithm)?;
        let account = if !req.account.is_empty() {
            req.account.clone()
        } else if !req.holder.is_empty() {
            req.holder.clone()
        } else {
            serial.clone()
        };
        let issuer = if req.issuer.is_empty() {
            "okey".to_owned()
        } else {
            req.issuer.clone()
        };
        let mut uri = okey_intake::KeyUri::builder(account, seed.clone())
            .issuer(issuer)
            .digits(digits)
            .algorithm(match algorithm {
                Algorithm::Sha1 => okey_intake::HashAlgorithm::Sha1,
                Algorithm::Sha256 => okey_intake::HashAlgorithm::Sha256,
                Algorithm::Sha512 => okey_intake::HashAlgorithm::Sha512,
            });
        uri = match &otp {
            OtpKind::Totp { step, .. } => uri.totp(*step),
            _ => uri.hotp(0),
        };
        let uri = uri.build().map_err(invalid)?;
        let info = self
            .store
            .create_token(
                NewToken {
                    valid_until: None,
                    serial,
                    kind,
                    otp,
                    algorithm,
                    digits,
                    seed,
                    counter: 0,
                    drift: 0,
                    status: TokenStatus::Pending,
                    holder: optional(req.holder),
                    description: optional(req.description),
                },
                &actor_of(&principal),
            )
            .map_err(store_status)?;
        let text = uri.to_uri();
        Ok(Response::new(proto::CreateTokenResponse {
            token: Some(token_to_proto(&info)),
            otpauth_uri: text.as_str().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ImportTokens"))]
    async fn import_tokens(
        &self,
        request: Request<proto::ImportTokensRequest>,
    ) -> Result<Response<proto::ImportTokensResponse>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::ImportTokens)
            .await?;
        let req = request.into_inner();
        if req.tokens.is_empty() || req.tokens.len() > MAX_IMPORT {
            return Err(Status::invalid_argument(
                "an import carries 1 to 100,000 tokens",
            ));
        }
        let mut batch = Vec::with_capacity(req.tokens.len());
        for (i, t) in req.tokens.into_iter().enumerate() {
            let at = |s: Status| within(&format!("token {} ({})", i + 1, shown(&t.serial)), &s);
            serial_arg(&t.serial).map_err(at)?;
            let (otp, algorithm, digits) = otp_of(t.otp.as_ref()).map_err(at)?;
            let counter = counter_of(&otp, t.counter).map_err(at)?;
            let seed = match (t.seed_hex.is_empty(), t.seed_base32.is_empty()) {
                (false, true) => hex::decode(t.seed_hex.trim())
                    .map_err(|_| at(Status::invalid_argument("the seed is not hexadecimal")))?,
                (true, false) => {
                    let cleaned: String = t
                        .seed_base32
                        .chars()
                        .filter(|c| !c.is_whitespace() && *c != '=')
                        .collect::<String>()
                        .to_ascii_uppercase();
                    data_encoding::BASE32_NOPAD
                        .decode(cleaned.as_bytes())
                        .map_err(|_| at(Status::invalid_argument("the seed is not base32")))?
                }
                _ => {
                    return Err(at(Status::invalid_argument(
                        "give the seed as exactly one of hex or base32",
                    )));
                }
            };
            let seed = Zeroizing::new(seed);
            if seed.len() < MIN_SEED_LEN || seed.len() > okey_otp::MAX_KEY_LEN {
                return Err(at(Status::invalid_argument(format!(
                    "the seed must be {MIN_SEED_LEN} to {} bytes (RFC 4226: at least 128 bits)",
                    okey_otp::MAX_KEY_LEN
                ))));
            }
            let holder = if t.holder.is_empty() {
                None
            } else {
                Some(fold_holder(&t.holder).map_err(invalid).map_err(at)?)
            };
            check_description(&t.description).map_err(at)?;
            batch.push(NewToken {
                valid_until: None,
                serial: t.serial.clone(),
                kind: kind_of(t.kind, TokenKind::Hardware).map_err(at)?,
                otp,
                algorithm,
                digits,
                seed,
                counter,
                drift: 0,
                status: TokenStatus::Active,
                holder,
                description: optional(t.description.clone()),
            });
        }
        let imported = self
            .store
            .import_tokens(batch, &actor_of(&principal))
            .map_err(store_status)?;
        Ok(Response::new(proto::ImportTokensResponse {
            imported: u32::try_from(imported).unwrap_or(u32::MAX),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ImportSeedFile"))]
    async fn import_seed_file(
        &self,
        request: Request<tonic::Streaming<proto::SeedFileChunk>>,
    ) -> Result<Response<proto::ImportSeedFileResponse>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::ImportSeedFile)
            .await?;
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the first message must carry the options"))?;
        let options = first
            .options
            .ok_or_else(|| Status::invalid_argument("the first message must carry the options"))?;
        let kind = kind_of(options.kind, TokenKind::Hardware)?;
        let password = Zeroizing::new(options.password);
        let psk = Zeroizing::new(options.pre_shared_key);
        let format = match proto::SeedFileFormat::try_from(options.format) {
            Ok(proto::SeedFileFormat::Pskc) => {
                Format::Pskc(match (password.is_empty(), psk.is_empty()) {
                    (true, true) => okey_intake::PskcOptions::plain(),
                    (false, true) => okey_intake::PskcOptions::with_password(password.clone()),
                    (true, false) => okey_intake::PskcOptions::with_key(psk.clone()),
                    (false, false) => {
                        return Err(Status::invalid_argument(
                            "give a password or a pre-shared key, not both",
                        ));
                    }
                })
            }
            Ok(proto::SeedFileFormat::OathCsv) if password.is_empty() && psk.is_empty() => {
                Format::OathCsv
            }
            Ok(proto::SeedFileFormat::OathCsv) => {
                return Err(Status::invalid_argument(
                    "an OATH CSV file is not encrypted: give no password or pre-shared key",
                ));
            }
            _ => {
                return Err(Status::invalid_argument(
                    "the format must be PSKC or OATH_CSV",
                ));
            }
        };
        let (tx, reader) = ChunkReader::new(16);
        let map = seed_files::Mapping {
            holder_from_user_id: options.holder_from_user_id,
        };
        let parser =
            tokio::task::spawn_blocking(move || seed_files::parse(reader, format, kind, map));
        let mut total = first.data.len();
        let mut ended = first.end;
        if !first.data.is_empty() && tx.send(first.data).await.is_err() {
            return Err(Status::internal("the seed file parser stopped"));
        }
        let mut parser_stopped = false;
        while let Some(chunk) = stream.message().await? {
            if ended {
                return Err(Status::invalid_argument(
                    "data after the message that ended the file; nothing imported",
                ));
            }
            ended = chunk.end;
            total += chunk.data.len();
            if total > MAX_SEED_FILE {
                return Err(Status::invalid_argument(
                    "the seed file is larger than 1 GiB",
                ));
            }
            // The parser stops early on a file-level error; the rest is not needed then.
            if tx.send(chunk.data).await.is_err() {
                parser_stopped = true;
                break;
            }
        }
        drop(tx);
        if !ended && !parser_stopped {
            return Err(Status::invalid_argument(
                "the upload stopped before the client marked the end of the file; nothing imported",
            ));
        }
        let (parsed, ignored) = parser
            .await
            .map_err(|_| Status::internal("the seed file parser failed"))?;
        let (mut tokens, mut refused) = match parsed {
            Parsed::FileRefused(why) => {
                return Err(invalid(format!(
                    "the file was refused, nothing imported: {why}"
                )));
            }
            Parsed::Complete(t) => (t, Vec::new()),
            Parsed::WithRefusals(t, r) => (t, r),
        };
        if !refused.is_empty() && !options.partial {
            let listed: Vec<String> = refused
                .iter()
                .take(20)
                .map(|r| format!("{}: {}", r.package, r.reason))
                .collect();
            return Err(invalid(format!(
                "{} package(s) refused, nothing imported (use partial import to keep the others): {}",
                refused.len(),
                listed.join("; ")
            )));
        }
        if options.partial {
            // Serials already in the store would refuse the whole transaction: report them instead.
            let mut kept = Vec::with_capacity(tokens.len());
            for t in tokens {
                match self.store.token(&t.serial) {
                    Ok(_) => refused.push(Refused {
                        package: format!("serial {:?}", t.serial),
                        reason: "a token with this serial already exists".into(),
                    }),
                    Err(e) if is_not_found(&e) => kept.push(t),
                    Err(e) => return Err(store_status(e)),
                }
            }
            tokens = kept;
        }
        if tokens.is_empty() {
            // Say why, package by package: a partial import of nothing is still explained.
            let listed: Vec<String> = refused
                .iter()
                .take(20)
                .map(|r| format!("{}: {}", r.package, r.reason))
                .collect();
            return Err(invalid(if listed.is_empty() {
                "the file holds no token that could be imported".to_owned()
            } else {
                format!(
                    "the file holds no token that could be imported; {} package(s) refused: {}",
                    refused.len(),
                    listed.join("; ")
                )
            }));
        }
        let imported = self
            .store
            .import_tokens(tokens, &actor_of(&principal))
            .map_err(store_status)?;
        Ok(Response::new(proto::ImportSeedFileResponse {
            imported: u32::try_from(imported).unwrap_or(u32::MAX),
            refused: refused
                .into_iter()
                .map(|r| proto::RefusedPackage {
                    package: r.package,
                    reason: r.reason,
                })
                .collect(),
            ignored,
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "GetToken"))]
    async fn get_token(
        &self,
        request: Request<proto::GetTokenRequest>,
    ) -> Result<Response<proto::Token>, Status> {
        self.callers
            .authorize(&request, Operation::GetToken)
            .await?;
        let serial = request.into_inner().serial;
        serial_arg(&serial)?;
        let info = self.store.token(&serial).map_err(store_status)?;
        Ok(Response::new(token_to_proto(&info)))
    }

    #[tracing::instrument(skip_all, fields(op = "ListTokens"))]
    async fn list_tokens(
        &self,
        request: Request<proto::ListTokensRequest>,
    ) -> Result<Response<proto::ListTokensResponse>, Status> {
        self.callers
            .authorize(&request, Operation::ListTokens)
            .await?;
        let mut req = request.into_inner();
        let limit = match req.page_size {
            0 => 100,
            n if n > MAX_PAGE => return Err(Status::invalid_argument("page_size is at most 1000")),
            n => n,
        };
        if !req.holder.is_empty() {
            req.holder = fold_holder(&req.holder).map_err(invalid)?;
        }
        if !req.serial_prefix.is_empty() {
            serial_arg(&req.serial_prefix)?;
        }
        if !req.page_token.is_empty() {
            serial_arg(&req.page_token)?;
        }
        let filter = TokenFilter {
            status: status_of(req.status)?,
            holder: optional(req.holder),
            kind: match req.kind {
                0 => None,
                k => Some(kind_of(k, TokenKind::Hardware)?),
            },
            serial_prefix: optional(req.serial_prefix),
        };
        let after = optional(req.page_token);
        let tokens = self
            .store
            .list_tokens(&filter, after.as_deref(), limit)
            .map_err(store_status)?;
        let next_page_token = if tokens.len() == limit as usize {
            tokens.last().map(|t| t.serial.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::ListTokensResponse {
            tokens: tokens.iter().map(token_to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "AssignToken"))]
    async fn assign_token(
        &self,
        request: Request<proto::AssignTokenRequest>,
    ) -> Result<Response<proto::Token>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::AssignToken)
            .await?;
        let mut req = request.into_inner();
        serial_arg(&req.serial)?;
        if !req.holder.is_empty() {
            req.holder = fold_holder(&req.holder).map_err(invalid)?;
        }
        let holder = optional(req.holder);
        let info = self
            .store
            .assign(&req.serial, holder.as_deref(), &actor_of(&principal))
            .map_err(store_status)?;
        Ok(Response::new(token_to_proto(&info)))
    }

    #[tracing::instrument(skip_all, fields(op = "SetPin"))]
    async fn set_pin(
        &self,
        request: Request<proto::SetPinRequest>,
    ) -> Result<Response<proto::Token>, Status> {
        let principal = self.callers.authorize(&request, Operation::SetPin).await?;
        let req = request.into_inner();
        serial_arg(&req.serial)?;
        let pin_text = Zeroizing::new(req.pin);
        let pin = if pin_text.is_empty() {
            None
        } else {
            Some(okey_otp::Pin::new(&pin_text).map_err(invalid)?)
        };
        self.store
            .set_pin(&req.serial, pin.as_ref(), &actor_of(&principal))
            .map_err(store_status)?;
        let info = self.store.token(&req.serial).map_err(store_status)?;
        Ok(Response::new(token_to_proto(&info)))
    }

    #[tracing::instrument(skip_all, fields(op = "ResyncToken"))]
    async fn resync_token(
        &self,
        request: Request<proto::ResyncTokenRequest>,
    ) -> Result<Response<proto::Token>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::ResyncToken)
            .await?;
        let req = request.into_inner();
        serial_arg(&req.serial)?;
        let (first, second) = (
            Zeroizing::new(req.first_code),
            Zeroizing::new(req.second_code),
        );
        if first.len() > 10 || second.len() > 10 || first.is_empty() || second.is_empty() {
            return Err(Status::invalid_argument(
                "give two codes of the token's length",
            ));
        }
        let actor = self
            .support_desk(&principal, Operation::ResyncToken)
            .await?;
        let outcome = self
            .store
            .resync(&req.serial, &first, &second, clock::now(), &actor)
            .await
            .map_err(store_status)?;
        if !outcome.accepted {
            return Err(Status::failed_precondition(format!(
                "the two codes were not found as consecutive codes in the resynchronisation window ({})",
                outcome.reason.as_str()
            )));
        }
        let info = self.store.token(&req.serial).map_err(store_status)?;
        Ok(Response::new(token_to_proto(&info)))
    }

    #[tracing::instrument(skip_all, fields(op = "UnlockToken"))]
    async fn unlock_token(
        &self,
        request: Request<proto::TokenRef>,
    ) -> Result<Response<proto::Token>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::UnlockToken)
            .await?;
        let serial = request.into_inner().serial;
        serial_arg(&serial)?;
        let actor = self
            .support_desk(&principal, Operation::UnlockToken)
            .await?;
        let info = self.store.unlock(&serial, &actor).map_err(store_status)?;
        Ok(Response::new(token_to_proto(&info)))
    }

    #[tracing::instrument(skip_all, fields(op = "EnableToken"))]
    async fn enable_token(
        &self,
        request: Request<proto::TokenRef>,
    ) -> Result<Response<proto::Token>, Status> {
        self.change_status(request, Operation::EnableToken, TokenStatus::Active)
            .await
    }

    #[tracing::instrument(skip_all, fields(op = "DisableToken"))]
    async fn disable_token(
        &self,
        request: Request<proto::TokenRef>,
    ) -> Result<Response<proto::Token>, Status> {
        self.change_status(request, Operation::DisableToken, TokenStatus::Disabled)
            .await
    }

    #[tracing::instrument(skip_all, fields(op = "RevokeToken"))]
    async fn revoke_token(
        &self,
        request: Request<proto::TokenRef>,
    ) -> Result<Response<proto::Token>, Status> {
        self.change_status(request, Operation::RevokeToken, TokenStatus::Revoked)
            .await
    }

    #[tracing::instrument(skip_all, fields(op = "BeginInitialisation"))]
    async fn begin_initialisation(
        &self,
        request: Request<proto::BeginInitialisationRequest>,
    ) -> Result<Response<proto::BeginInitialisationResponse>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::BeginInitialisation)
            .await?;
        let req = request.into_inner();
        serial_arg(&req.serial)?;
        check_description(&req.description)?;
        let (otp, algorithm, digits) = otp_of(req.otp.as_ref())?;
        let seed = random_seed(algorithm)?;
        // A serial whose earlier initialisation failed is still initialising (it never
        // verified anything): it gets a fresh seed in place. Any other existing serial is refused.
        let again = match self.store.token(&req.serial) {
            Ok(t) if t.status == TokenStatus::Initialising => true,
            Ok(_) => {
                return Err(Status::already_exists(format!(
                    "token {} already exists and is not being initialised",
                    req.serial
                )));
            }
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(store_status(e)),
        };
        let token = NewToken {
            valid_until: None,
            serial: req.serial,
            kind: TokenKind::Hardware,
            otp,
            algorithm,
            digits,
            seed: seed.clone(),
            counter: 0,
            drift: 0,
            status: TokenStatus::Initialising,
            holder: None,
            description: optional(req.description),
        };
        let actor = actor_of(&principal);
        let info = if again {
            self.store.reinitialise(token, &actor)
        } else {
            self.store.create_token(token, &actor)
        }
        .map_err(store_status)?;
        Ok(Response::new(proto::BeginInitialisationResponse {
            token: Some(token_to_proto(&info)),
            seed: seed.to_vec(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "CompleteInitialisation"))]
    async fn complete_initialisation(
        &self,
        request: Request<proto::CompleteInitialisationRequest>,
    ) -> Result<Response<proto::Token>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::CompleteInitialisation)
            .await?;
        let req = request.into_inner();
        serial_arg(&req.serial)?;
        let code = Zeroizing::new(req.code);
        let actor = actor_of(&principal);
        let current = self.store.token(&req.serial).map_err(store_status)?;
        if current.status != TokenStatus::Initialising {
            return Err(Status::failed_precondition(
                "the token is not being initialised",
            ));
        }
        let outcome = self
            .store
            .confirm_initialisation(&req.serial, &code, clock::now(), &actor)
            .await
            .map_err(store_status)?;
        if !outcome.accepted {
            return Err(Status::failed_precondition(
                "the code read back from the device does not match: the token stays inactive; erase the slot and start again",
            ));
        }
        let info = self.store.token(&req.serial).map_err(store_status)?;
        Ok(Response::new(token_to_proto(&info)))
    }

    #[tracing::instrument(skip_all, fields(op = "AbortInitialisation"))]
    async fn abort_initialisation(
        &self,
        request: Request<proto::TokenRef>,
    ) -> Result<Response<proto::Token>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::AbortInitialisation)
            .await?;
        let serial = request.into_inner().serial;
        serial_arg(&serial)?;
        let current = self.store.token(&serial).map_err(store_status)?;
        if current.status != TokenStatus::Initialising {
            return Err(Status::failed_precondition(
                "the token is not being initialised",
            ));
        }
        // The token stays initialising: it never verifies, and a new attempt re-seeds it.
        self.audit(
            &actor_of(&principal),
            "initialise",
            &serial,
            Some(&serial),
            "rejected",
            "aborted",
            clock::now(),
        )
        .await;
        Ok(Response::new(token_to_proto(&current)))
    }
}

impl Okey {
    async fn change_status(
        &self,
        request: Request<proto::TokenRef>,
        operation: Operation,
        to: TokenStatus,
    ) -> Result<Response<proto::Token>, Status> {
        let principal = self.callers.authorize(&request, operation).await?;
        let serial = request.into_inner().serial;
        serial_arg(&serial)?;
        let info = self
            .store
            .set_status(&serial, to, &actor_of(&principal))
            .map_err(store_status)?;
        Ok(Response::new(token_to_proto(&info)))
    }
}

impl Okey {
    /// `RotateMasterKey`, after authorisation.
    async fn rotate_master_key_checked(
        &self,
        req: proto::RotateMasterKeyRequest,
        actor: Actor,
    ) -> Result<proto::RotateMasterKeyResponse, Status> {
        let to = okey_store::MasterKeySource::parse(&req.to).map_err(store_status)?;
        let detail = match &to {
            okey_store::MasterKeySource::Pkcs11(p) => {
                if !self.master_key.may_load(&p.module) {
                    return Err(Status::permission_denied(
                        "this PKCS#11 module is not one the server may load: name it in [master_key] module or allowed_modules",
                    ));
                }
                "[master_key] source = \"pkcs11\" with the same module, token, key label and PIN"
            }
            okey_store::MasterKeySource::File(_) => {
                if req.generate {
                    return Err(Status::invalid_argument(
                        "generate creates a key in an HSM; a key file is created when missing",
                    ));
                }
                "master_key_file pointing at it (and no [master_key] pkcs11 table)"
            }
            _ => {
                return Err(Status::invalid_argument(
                    "expected file:PATH or a pkcs11: URI",
                ));
            }
        };
        let store = self.store.clone();
        let target = to.clone();
        let generate = req.generate;
        tokio::task::spawn_blocking(move || {
            if let (true, okey_store::MasterKeySource::Pkcs11(p)) = (generate, &target) {
                Store::generate_hsm_master_key(p)?;
            }
            store.rotate_master_key_as(target, &actor)
        })
        .await
        .map_err(|_| Status::internal("the rotation stopped"))?
        .map_err(|e| match e {
            okey_store::StoreError::Invalid { .. } => store_status(e),
            // The old key stays in use; say why (HSM, PIN, label, key file) to the admin.
            other => {
                tracing::warn!(error = %other, "online master key rotation refused");
                Status::failed_precondition(other.to_string())
            }
        })?;
        tracing::warn!(to = %to, "the master key was rotated online; change the configuration before the next start");
        Ok(proto::RotateMasterKeyResponse {
            detail: format!(
                "the data keys are now wrapped by {to} and the server uses it; before the next start set {detail}"
            ),
        })
    }
}

#[tonic::async_trait]
impl proto::audit_service_server::AuditService for Arc<Okey> {
    #[tracing::instrument(skip_all, fields(op = "VerifyAuditChain"))]
    async fn verify_audit_chain(
        &self,
        request: Request<proto::VerifyAuditChainRequest>,
    ) -> Result<Response<proto::VerifyAuditChainResponse>, Status> {
        self.callers
            .authorize(&request, Operation::VerifyAuditChain)
            .await?;
        let req = request.into_inner();
        if req.anchors.len() > MAX_ANCHORS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_ANCHORS} anchors in one check"
            )));
        }
        let mut anchors = Vec::with_capacity(req.anchors.len() + 1);
        for a in &req.anchors {
            let mac: [u8; 32] = a.hash.as_slice().try_into().map_err(|_| {
                Status::invalid_argument(format!(
                    "the hash of the anchor of record {} is not 32 bytes",
                    a.sequence
                ))
            })?;
            if a.sequence == 0 {
                return Err(Status::invalid_argument(
                    "an anchored sequence number starts at 1",
                ));
            }
            anchors.push(okey_store::AuditAnchor {
                seq: a.sequence,
                mac,
            });
        }
        let anchor = match (req.anchor_sequence, req.anchor_hash.as_str()) {
            (0, "") => None,
            (0, _) | (_, "") => {
                return Err(Status::invalid_argument(
                    "an anchor needs both its sequence number and its hash",
                ));
            }
            (seq, hash) => {
                let mut mac = [0u8; 32];
                hex::decode_to_slice(hash, &mut mac).map_err(|_| {
                    Status::invalid_argument("the anchor hash is 64 hexadecimal characters")
                })?;
                Some(okey_store::AuditAnchor { seq, mac })
            }
        };
        anchors.extend(anchor);
        let store = self.store.clone();
        let report = tokio::task::spawn_blocking(move || store.audit_verify_anchors(anchors))
            .await
            .map_err(|_| Status::internal("the audit check stopped"))?
            .map_err(store_status)?;
        Ok(Response::new(proto::VerifyAuditChainResponse {
            intact: report.first_bad.is_none(),
            entries: report.records,
            first_bad_sequence: report.first_bad.unwrap_or(0),
            detail: report.problem.unwrap_or_default(),
            head_sequence: report.head.map_or(0, |h| h.seq),
            head_hash: report.head.map(|h| hex::encode(h.mac)).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "GetAuditPublicKey"))]
    async fn get_audit_public_key(
        &self,
        request: Request<proto::GetAuditPublicKeyRequest>,
    ) -> Result<Response<proto::GetAuditPublicKeyResponse>, Status> {
        self.callers
            .authorize(&request, Operation::GetAuditPublicKey)
            .await?;
        Ok(Response::new(proto::GetAuditPublicKeyResponse {
            public_key: self.store.anchor_public_key().to_text(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ListAudit"))]
    async fn list_audit(
        &self,
        request: Request<proto::ListAuditRequest>,
    ) -> Result<Response<proto::ListAuditResponse>, Status> {
        self.callers
            .authorize(&request, Operation::ListAudit)
            .await?;
        let limit = match request.into_inner().limit {
            0 => 100,
            n if n > MAX_PAGE => return Err(Status::invalid_argument("limit is at most 1000")),
            n => n,
        };
        let records = self.store.audit_tail(limit).map_err(store_status)?;
        Ok(Response::new(proto::ListAuditResponse {
            records: records
                .into_iter()
                .map(|r| proto::AuditRecord {
                    sequence: r.seq,
                    at: r.entry.at,
                    actor: r.entry.actor,
                    action: r.entry.action,
                    subject: r.entry.subject,
                    serial: r.entry.serial.unwrap_or_default(),
                    result: r.entry.result,
                    reason: r.entry.reason,
                    hash: hex::encode(r.mac),
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl proto::caller_service_server::CallerService for Arc<Okey> {
    #[tracing::instrument(skip_all, fields(op = "CreateApiKey"))]
    async fn create_api_key(
        &self,
        request: Request<proto::CreateApiKeyRequest>,
    ) -> Result<Response<proto::CreateApiKeyResponse>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::CreateApiKey)
            .await?;
        let req = request.into_inner();
        validate_principal_name(&req.name).map_err(invalid)?;
        if req.roles.is_empty() || req.roles.len() > Role::ALL.len() {
            return Err(Status::invalid_argument(format!(
                "give 1 to {} roles",
                Role::ALL.len()
            )));
        }
        let roles = req
            .roles
            .iter()
            .map(|r| {
                r.parse::<Role>().map(|r| r.name().to_owned()).map_err(|_| {
                    invalid(format!(
                        "unknown role {}: expected one of {}",
                        shown(r),
                        Role::ALL.map(Role::name).join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if roles.iter().any(|r| r == Role::Portal.name()) && roles.len() > 1 {
            return Err(invalid(
                "the role portal is given alone: a portal acts only for the person each request names",
            ));
        }
        let person = if req.person.is_empty() {
            None
        } else {
            if roles.iter().any(|r| r == Role::Portal.name()) {
                return Err(invalid(
                    "a portal key names its person in each request (okey-acting-person); it is not bound to one",
                ));
            }
            Some(okey_domain::org::PersonId::parse(&req.person).map_err(|_| {
                invalid(format!(
                    "{} is not a person id: 1 to 128 letters, digits and . _ - @",
                    shown(&req.person)
                ))
            })?)
        };
        let key = generate_key()
            .map_err(|_| Status::unavailable("the system random generator failed"))?;
        let actor = actor_of(&principal);
        match &person {
            Some(person) => {
                self.store
                    .add_api_key_for(&req.name, hash_key(&key), &roles, person, &actor)
            }
            None => self
                .store
                .add_api_key(&req.name, hash_key(&key), &roles, &actor),
        }
        .map_err(store_status)?;
        self.callers.invalidate();
        Ok(Response::new(proto::CreateApiKeyResponse {
            name: req.name,
            api_key: key.as_str().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ListApiKeys"))]
    async fn list_api_keys(
        &self,
        request: Request<proto::ListApiKeysRequest>,
    ) -> Result<Response<proto::ListApiKeysResponse>, Status> {
        self.callers
            .authorize(&request, Operation::ListApiKeys)
            .await?;
        let mut out = Vec::new();
        for p in self.store.list_api_keys().map_err(store_status)? {
            let person = self.store.caller_person(&p.name).map_err(store_status)?;
            out.push(proto::ApiPrincipal {
                name: p.name,
                roles: p.roles,
                disabled: p.disabled,
                person: person.map(|p| p.as_str().to_owned()).unwrap_or_default(),
            });
        }
        Ok(Response::new(proto::ListApiKeysResponse {
            principals: out,
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "RevokeApiKey"))]
    async fn revoke_api_key(
        &self,
        request: Request<proto::RevokeApiKeyRequest>,
    ) -> Result<Response<proto::RevokeApiKeyResponse>, Status> {
        let principal = self
            .callers
            .authorize(&request, Operation::RevokeApiKey)
            .await?;
        let name = request.into_inner().name;
        validate_principal_name(&name).map_err(invalid)?;
        if name == principal.name {
            return Err(Status::failed_precondition(
                "a caller cannot revoke its own key",
            ));
        }
        self.store
            .revoke_api_key(&name, &actor_of(&principal))
            .map_err(store_status)?;
        self.callers.invalidate();
        Ok(Response::new(proto::RevokeApiKeyResponse {}))
    }

    #[tracing::instrument(skip_all, fields(op = "WhoAmI"))]
    async fn who_am_i(
        &self,
        request: Request<proto::WhoAmIRequest>,
    ) -> Result<Response<proto::ApiPrincipal>, Status> {
        let principal = self.callers.authorize(&request, Operation::WhoAmI).await?;
        Ok(Response::new(proto::ApiPrincipal {
            name: principal.name.clone(),
            roles: principal
                .roles
                .iter()
                .map(|r| r.name().to_owned())
                .collect(),
            disabled: false,
            person: principal
                .acting_for
                .clone()
                .or_else(|| principal.person.clone())
                .unwrap_or_default(),
        }))
    }
}

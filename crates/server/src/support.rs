//! The `SupportService`: support cases, the diagnosis of a key, temporary keys.
//!
//! Each handler authorises its caller's roles for one [`Operation`], works out the acting person
//! ([`Okey::acting`]) and lets the domain decide the rest: who may open a case
//! (`okey_domain::support::may_open`, in the store), which fields are required, which action
//! fits a key. A manager or portal sees and answers only the cases its person declared, never
//! an internal note.

use std::sync::Arc;

use okey_domain::org::Scope;
use okey_domain::request::check_attachment;
use okey_domain::support::{self as rules, AttachmentInfo, CaseForm, CaseKind, Priority};
use okey_domain::{Operation, Role, validate_serial};
use okey_otp::Algorithm;
use okey_store::support_db::{CaseFilter, CaseRow, CaseState};
use okey_store::{Acting, CaseView, KeyChange, NewCase, NewToken, OtpKind, TokenStatus};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::callers::Principal;
use crate::clock;
use crate::proto;
use crate::service::{Okey, random_seed, random_serial};
use crate::status::{invalid, store_status};

fn priority_of(p: i32) -> Result<Option<Priority>, Status> {
    match proto::CasePriority::try_from(p) {
        Ok(proto::CasePriority::Unspecified) => Ok(None),
        Ok(proto::CasePriority::Blocking) => Ok(Some(Priority::Blocking)),
        Ok(proto::CasePriority::Major) => Ok(Some(Priority::Major)),
        Ok(proto::CasePriority::Minor) => Ok(Some(Priority::Minor)),
        Err(_) => Err(Status::invalid_argument(
            "the priority must be BLOCKING, MAJOR or MINOR",
        )),
    }
}

fn priority_to_proto(p: Priority) -> proto::CasePriority {
    match p {
        Priority::Blocking => proto::CasePriority::Blocking,
        Priority::Major => proto::CasePriority::Major,
        Priority::Minor => proto::CasePriority::Minor,
    }
}

fn case_to_proto(c: &CaseRow, messages: Vec<proto::CaseMessage>) -> proto::Case {
    proto::Case {
        number: c.number.clone(),
        kind: c.kind.as_str().to_owned(),
        priority: priority_to_proto(c.priority) as i32,
        state: c.state.as_str().to_owned(),
        unit: c.unit.clone(),
        declarant: c.declarant.clone(),
        declarant_email: c.declarant_email.clone(),
        copy_to: c.copy_to.clone().unwrap_or_default(),
        name: c.name.clone(),
        function: c.function.clone(),
        phone: c.phone.clone(),
        unit_town: c.unit_town.clone(),
        subject: c.subject.clone(),
        population: c.population.clone(),
        description: c.description.clone(),
        location: c.location.clone(),
        attachments: c.attachments.clone(),
        serial: c.serial.clone().unwrap_or_default(),
        serials: c.serials.clone(),
        assignee: c.assignee.clone().unwrap_or_default(),
        opened_at: c.opened_at,
        updated_at: c.updated_at,
        // Filled by the handlers that may read the attachment store.
        files: Vec::new(),
        resolved_at: c.resolved_at.unwrap_or(0),
        resolution: c.resolution.clone().unwrap_or_default(),
        messages,
        diagnosis: None,
    }
}

fn case_number(n: &str) -> Result<(), Status> {
    if rules::is_case_number(n) {
        Ok(())
    } else {
        Err(Status::invalid_argument(
            "a case number looks like UNIT-YEAR-SEQUENCE, e.g. 0750654D-2026-0007",
        ))
    }
}

/// Whether the caller is the support desk (sees every case and the internal notes).
fn desk(p: &Principal, acting: &Acting) -> bool {
    p.roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::Support))
        || (p.roles.contains(&Role::Portal)
            && acting.central.contains(&okey_domain::Party::SupportCentre))
}

/// Whether the caller reads every case (the desk and auditors).
fn reads_all(p: &Principal, acting: &Acting) -> bool {
    desk(p, acting) || p.roles.contains(&Role::Auditor)
}

impl Okey {
    /// The case `number` if `p` may read it: the desk and auditors every case, anyone else the
    /// cases their person declared.
    fn readable_case(
        &self,
        p: &Principal,
        acting: &Acting,
        number: &str,
    ) -> Result<CaseView, Status> {
        case_number(number)?;
        let view = self.store.case(number).map_err(|e| match e {
            okey_store::StoreError::Precondition(m) => Status::not_found(m),
            other => store_status(other),
        })?;
        if reads_all(p, acting) || acting.person.as_deref() == Some(view.case.declarant.as_str()) {
            Ok(view)
        } else {
            Err(Status::permission_denied(format!(
                "{} did not declare case {number}: a case is read by its declarant and the \
                 support desk",
                p.name
            )))
        }
    }

    /// The case as `p` may see it: internal notes for the desk and auditors only, and the
    /// key's diagnosis for the desk.
    fn case_view(
        &self,
        p: &Principal,
        acting: &Acting,
        view: CaseView,
    ) -> Result<proto::Case, Status> {
        let messages = view
            .messages
            .iter()
            .filter(|m| !m.internal || reads_all(p, acting))
            .map(|m| proto::CaseMessage {
                at: m.at,
                author: m.author.clone(),
                internal: m.internal,
                body: m.body.clone(),
            })
            .collect();
        let mut out = case_to_proto(&view.case, messages);
        out.files = self
            .store
            .attachment_infos(&okey_store::case_owner(&view.case.number))
            .map(|list| {
                list.into_iter()
                    .map(|a| proto::CaseFile {
                        id: a.id,
                        name: a.name,
                        media_type: a.media_type,
                        size: a.size,
                        sha256: a.sha256,
                    })
                    .collect()
            })
            .map_err(store_status)?;
        if desk(p, acting)
            && let Some(s) = &view.case.serial
        {
            out.diagnosis = self.diagnosis(s).ok();
        }
        Ok(out)
    }

    fn diagnosis(&self, serial: &str) -> Result<proto::Diagnosis, Status> {
        let now = clock::now();
        let facts = self.store.key_facts(serial, now).map_err(store_status)?;
        let d = rules::diagnose(&facts);
        let token = self.store.token(serial).map_err(store_status)?;
        let temporary = self
            .store
            .temporary_keys(serial)
            .map_err(store_status)?
            .into_iter()
            .filter(|t| t.replaces == serial)
            .map(|t| format!("{} (until {})", t.serial, t.expires_at))
            .collect();
        Ok(proto::Diagnosis {
            serial: serial.to_owned(),
            holder: token.holder.unwrap_or_default(),
            custody: facts
                .custody
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            status: token.status.as_str().to_owned(),
            locked: facts.locked,
            locked_until: facts.locked_until.unwrap_or(0),
            failures: facts.failures,
            lock_threshold: facts.lock_threshold,
            last_accept: facts.last_accept.unwrap_or(0),
            recent_refusals: facts
                .recent_failures
                .iter()
                .map(|f| proto::Refusal {
                    at: f.at,
                    reason: f.reason.clone(),
                })
                .collect(),
            valid_until: facts.valid_until.unwrap_or(0),
            active_until: facts.active_until.unwrap_or(0),
            totp: facts.totp_drift.is_some(),
            totp_drift: facts.totp_drift.unwrap_or(0),
            has_pin: facts.has_pin,
            action: d.remedy.as_str().to_owned(),
            advice: d.remedy.advice().to_owned(),
            findings: d.findings,
            temporary_keys: temporary,
        })
    }

    /// The author of a message: the acting person, else the caller.
    fn author(p: &Principal, acting: &Acting) -> String {
        acting.person.clone().unwrap_or_else(|| p.name.clone())
    }
}

#[tonic::async_trait]
impl proto::support_service_server::SupportService for Arc<Okey> {
    #[tracing::instrument(skip_all, fields(op = "OpenCase"))]
    async fn open_case(
        &self,
        request: Request<proto::OpenCaseRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::OpenCase)
            .await?;
        let acting = self.acting(&p)?;
        let Some(declarant) = acting.person.clone() else {
            return Err(Status::failed_precondition(format!(
                "{} acts for nobody: a case is opened by a person of the directory (a key \
                 bound to them, or a portal naming them)",
                p.name
            )));
        };
        let r = request.into_inner();
        let kind: CaseKind = r.kind.parse().map_err(invalid)?;
        let priority = priority_of(r.priority)?.ok_or_else(|| {
            Status::invalid_argument(format!(
                "the case needs its priority: {}; {}; {}",
                Priority::Blocking.help(),
                Priority::Major.help(),
                Priority::Minor.help()
            ))
        })?;
        if r.attachments.len() > okey_domain::request::MAX_ATTACHMENTS {
            return Err(Status::invalid_argument(format!(
                "a case carries at most {} attachments",
                okey_domain::request::MAX_ATTACHMENTS
            )));
        }
        let mut attachments = Vec::with_capacity(r.attachments.len());
        let mut lines = Vec::with_capacity(r.attachments.len());
        for a in &r.attachments {
            // Checked here to fill the form; checked again when sealed, in the store.
            let declared = (!a.media_type.is_empty()).then_some(a.media_type.as_str());
            let t = check_attachment(&a.name, declared, &a.content).map_err(invalid)?;
            lines.push(format!(
                "{} {} {} bytes sha256:{}",
                a.name,
                t.media_type(),
                a.content.len(),
                hex::encode(Sha256::digest(&a.content))
            ));
            attachments.push(AttachmentInfo {
                name: a.name.clone(),
                media_type: t.media_type(),
                size: a.content.len(),
            });
        }
        let new = NewCase {
            declarant,
            kind,
            priority,
            form: CaseForm {
                name: r.name,
                function: r.function,
                phone: r.phone,
                unit_town: r.unit_town,
                subject: r.subject,
                population: r.population,
                description: r.description,
                location: r.location,
                attachments,
            },
            attachment_lines: lines,
            files: r
                .attachments
                .into_iter()
                .map(|a| okey_store::NewAttachment {
                    declared: (!a.media_type.is_empty()).then_some(a.media_type),
                    name: a.name,
                    content: a.content,
                })
                .collect(),
            serial: (!r.serial.is_empty()).then_some(r.serial),
            serials: r.serials,
        };
        let case = self
            .store
            .open_case(new, &acting.actor, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(case_to_proto(&case, Vec::new())))
    }

    #[tracing::instrument(skip_all, fields(op = "ListCases"))]
    async fn list_cases(
        &self,
        request: Request<proto::ListCasesRequest>,
    ) -> Result<Response<proto::ListCasesResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ListCases)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let declarant = if reads_all(&p, &acting) {
            None
        } else {
            Some(acting.person.clone().ok_or_else(|| {
                Status::failed_precondition(format!("{} acts for nobody", p.name))
            })?)
        };
        let filter = CaseFilter {
            open_only: !r.all,
            declarant,
            assignee: (!r.assignee.is_empty()).then_some(r.assignee),
        };
        let limit = if r.limit == 0 {
            okey_store::MAX_CASES
        } else {
            r.limit
        };
        let cases = self.store.cases(&filter, limit).map_err(store_status)?;
        Ok(Response::new(proto::ListCasesResponse {
            cases: cases.iter().map(|c| case_to_proto(c, Vec::new())).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ShowCase"))]
    async fn show_case(
        &self,
        request: Request<proto::ShowCaseRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ShowCase)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let view = self.readable_case(&p, &acting, &r.number)?;
        Ok(Response::new(self.case_view(&p, &acting, view)?))
    }

    #[tracing::instrument(skip_all, fields(op = "ReplyCase"))]
    async fn reply_case(
        &self,
        request: Request<proto::ReplyCaseRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ReplyCase)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        if r.internal && !desk(&p, &acting) {
            return Err(Status::permission_denied(
                "internal notes are the support desk's (roles admin or support, or a person of the support centre through a portal)",
            ));
        }
        // The declarant answers on their own case only; the desk on any.
        let view = self.readable_case(&p, &acting, &r.number)?;
        if !desk(&p, &acting) && acting.person.as_deref() != Some(view.case.declarant.as_str()) {
            return Err(Status::permission_denied(format!(
                "{} did not declare case {}",
                p.name, r.number
            )));
        }
        self.store
            .reply_case(
                &r.number,
                &Okey::author(&p, &acting),
                &r.body,
                r.internal,
                &acting.actor,
                clock::now(),
            )
            .map_err(store_status)?;
        let view = self.store.case(&r.number).map_err(store_status)?;
        Ok(Response::new(self.case_view(&p, &acting, view)?))
    }

    #[tracing::instrument(skip_all, fields(op = "AssignCase"))]
    async fn assign_case(
        &self,
        request: Request<proto::AssignCaseRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::AssignCase)
            .await?;
        let r = request.into_inner();
        case_number(&r.number)?;
        // A portal acts here only for a person of the support centre.
        self.support_desk(&p, Operation::AssignCase).await?;
        let acting = self.acting(&p)?;
        let priority = priority_of(r.priority)?;
        self.store
            .assign_case(&r.number, &r.agent, priority, &acting.actor, clock::now())
            .map_err(store_status)?;
        let view = self.store.case(&r.number).map_err(store_status)?;
        Ok(Response::new(self.case_view(&p, &acting, view)?))
    }

    #[tracing::instrument(skip_all, fields(op = "ResolveCase"))]
    async fn resolve_case(
        &self,
        request: Request<proto::ResolveCaseRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ResolveCase)
            .await?;
        let r = request.into_inner();
        case_number(&r.number)?;
        // A portal acts here only for a person of the support centre.
        self.support_desk(&p, Operation::ResolveCase).await?;
        let acting = self.acting(&p)?;
        self.store
            .resolve_case(
                &r.number,
                &Okey::author(&p, &acting),
                &r.resolution,
                &acting.actor,
                clock::now(),
            )
            .map_err(store_status)?;
        let view = self.store.case(&r.number).map_err(store_status)?;
        Ok(Response::new(self.case_view(&p, &acting, view)?))
    }

    #[tracing::instrument(skip_all, fields(op = "RegisterCaseKeys"))]
    async fn register_case_keys(
        &self,
        request: Request<proto::RegisterCaseKeysRequest>,
    ) -> Result<Response<proto::RegisterCaseKeysResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::RegisterCaseKeys)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let view = self.readable_case(&p, &acting, &r.number)?;
        let case = view.case;
        if case.kind != CaseKind::KeysNotInOkey || case.state != CaseState::Open {
            return Err(Status::failed_precondition(format!(
                "case {} is not an open \"keys not in okey\" case",
                case.number
            )));
        }
        let tree = self.store.org_tree().map_err(store_status)?;
        let unit = okey_domain::org::UnitId::parse(&case.unit).map_err(invalid)?;
        let lot_ref = tree.home_lot(&unit).map_err(|e| {
            Status::failed_precondition(format!("the declarant's unit has no lot: {e}"))
        })?;
        let lot = self
            .store
            .scope_lots(&Scope {
                lots: vec![lot_ref.clone()],
                ..Scope::default()
            })
            .map_err(store_status)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "unit {} has no {} lot in okey: create it first",
                    case.unit, lot_ref.kind
                ))
            })?;
        let changes = case
            .serials
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    KeyChange::Register {
                        lot: lot.id.clone(),
                        valid_until: None,
                    },
                )
            })
            .collect();
        let now = clock::now();
        let done = self
            .store
            .change_keys(changes, &acting, now)
            .map_err(store_status)?;
        let serials: Vec<String> = done.iter().map(|o| o.key.serial.clone()).collect();
        self.store
            .note_case(
                &case.number,
                &format!("registered into lot {}: {}", lot.id, serials.join(", ")),
                &acting.actor,
                now,
            )
            .map_err(store_status)?;
        Ok(Response::new(proto::RegisterCaseKeysResponse {
            lot: lot.id,
            serials,
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "DiagnoseKey"))]
    async fn diagnose_key(
        &self,
        request: Request<proto::DiagnoseKeyRequest>,
    ) -> Result<Response<proto::Diagnosis>, Status> {
        self.callers
            .authorize(&request, Operation::DiagnoseKey)
            .await?;
        let r = request.into_inner();
        validate_serial(&r.serial).map_err(invalid)?;
        Ok(Response::new(self.diagnosis(&r.serial)?))
    }

    #[tracing::instrument(skip_all, fields(op = "GetCaseAttachment"))]
    async fn get_case_attachment(
        &self,
        request: Request<proto::GetCaseAttachmentRequest>,
    ) -> Result<Response<proto::CaseAttachmentContent>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::GetCaseAttachment)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        if r.id == 0 {
            return Err(Status::invalid_argument(
                "id: the attachment's id, as ShowCase lists it in files",
            ));
        }
        let view = self.readable_case(&p, &acting, &r.number)?;
        let (info, content) = self
            .store
            .attachment_content(&okey_store::case_owner(&view.case.number), r.id)
            .map_err(|e| match e {
                okey_store::StoreError::Precondition(_) => Status::not_found(format!(
                    "case {} has no attachment {}",
                    view.case.number, r.id
                )),
                other => store_status(other),
            })?;
        Ok(Response::new(proto::CaseAttachmentContent {
            name: info.name,
            media_type: info.media_type,
            content: content.to_vec(),
            sha256: info.sha256,
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "IssueTemporaryKey"))]
    async fn issue_temporary_key(
        &self,
        request: Request<proto::IssueTemporaryKeyRequest>,
    ) -> Result<Response<proto::TemporaryKeyResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::IssueTemporaryKey)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        validate_serial(&r.serial).map_err(invalid)?;
        let case = if r.case_number.is_empty() {
            None
        } else {
            case_number(&r.case_number)?;
            Some(r.case_number)
        };
        let seconds = match r.validity_days {
            0 => self.temporary_key_seconds,
            d if u64::from(d) <= okey_store::MAX_TEMPORARY_DAYS => u64::from(d) * 86_400,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "a temporary key lasts 1 to {} days",
                    okey_store::MAX_TEMPORARY_DAYS
                )));
            }
        };
        let holder = self
            .store
            .token(&r.serial)
            .map_err(store_status)?
            .holder
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "key {} has no holder: a temporary key stands in for someone's key",
                    r.serial
                ))
            })?;
        let now = clock::now();
        let serial = random_serial()?;
        let seed = random_seed(Algorithm::Sha1)?;
        let uri = okey_intake::KeyUri::builder(holder.clone(), seed.clone())
            .issuer("okey".to_owned())
            .digits(6)
            .algorithm(okey_intake::HashAlgorithm::Sha1)
            .totp(30)
            .build()
            .map_err(invalid)?;
        let (info, rec) = self
            .store
            .issue_temporary_key(
                &r.serial,
                NewToken {
                    serial,
                    kind: okey_store::TokenKind::Software,
                    otp: OtpKind::Totp { step: 30, t0: 0 },
                    algorithm: Algorithm::Sha1,
                    digits: 6,
                    seed,
                    counter: 0,
                    drift: 0,
                    status: TokenStatus::Pending,
                    holder: Some(holder),
                    description: Some(format!("temporary key in place of {}", r.serial)),
                    valid_until: Some(now + seconds),
                },
                case,
                &acting.actor,
                now,
            )
            .map_err(store_status)?;
        Ok(Response::new(proto::TemporaryKeyResponse {
            serial: info.serial,
            replaces: rec.replaces,
            holder: rec.holder,
            expires_at: rec.expires_at,
            otpauth_uri: uri.to_uri().as_str().to_owned(),
        }))
    }
}

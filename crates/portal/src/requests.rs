//! The requester's and the validator's pages: "ma clef", a request filed with its attachments,
//! the charter, the PIN, the pickup appointment, a software key's QR code, a lost key, and the
//! validator's decision. Each handler is one or two RequestService calls made for the session's
//! person; the server decides who may do what (the request's parties), and its refusals are
//! the portal's refusal pages.
//!
//! The PIN is read into zeroized strings, compared with its confirmation in constant time, sent
//! only in SetRequestPin, and never put back into a page, a URL or a log. A software key's
//! otpauth URI is drawn as an inline SVG QR code in the one answer that shows it, then dropped.

use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use okey_server::proto;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tonic::Code;
use zeroize::Zeroizing;

use crate::request_pages::{self, RequestView};
use crate::web::{Page, PageError, Rendered, Shared, User, page, person_entry, see_other};

/// Largest body of the request form: the domain's attachments at their largest, and the fields.
pub const FORM_LIMIT: usize =
    okey_domain::request::MAX_ATTACHMENTS * okey_domain::request::MAX_ATTACHMENT_BYTES + 64 * 1024;

fn request_page(id: u64) -> String {
    format!("/demandes/{id}")
}

/// The person's keys (all they hold, as the server lists them) and their requests.
pub async fn my_key(State(app): State<Shared>, user: User, Query(f): Query<Done>) -> Page {
    let s = &user.session;
    let mut requests = app
        .grpc
        .requests()
        .list_requests(app.grpc.request(
            &s.person,
            proto::ListRequestsRequest {
                waiting_for_me: false,
            },
        )?)
        .await?
        .into_inner()
        .requests;
    requests.retain(|r| r.requester == s.person);
    requests.sort_by_key(|r| std::cmp::Reverse(r.id));
    let keys = app
        .grpc
        .lifecycle_client()
        .list_my_keys(app.grpc.request(&s.person, proto::ListMyKeysRequest {})?)
        .await?
        .into_inner()
        .keys;
    page(request_pages::my_key(s, &keys, &requests, &f.fait))
}

/// A flash of what was just done.
#[derive(Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    fait: String,
}

#[derive(Deserialize)]
pub struct LostForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    commentaire: String,
}

/// The holder declares their key lost (it stops logging in at once).
pub async fn declare_lost(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    axum::Form(f): axum::Form<LostForm>,
) -> Page {
    user.check(&f.csrf)?;
    app.grpc
        .lifecycle_client()
        .change_key(app.grpc.request(
            &user.session.person,
            proto::ChangeKeyRequest {
                serial,
                action: proto::KeyChangeAction::Lost as i32,
                comment: f.commentaire.trim().to_owned(),
                person: String::new(),
                at: 0,
            },
        )?)
        .await?;
    see_other("/ma-clef?fait=perdue")
}

/// Whether the PIN and its confirmation are the same, compared in constant time.
fn typed_twice(pin: &str, confirmation: &str) -> bool {
    pin.len() == confirmation.len() && bool::from(pin.as_bytes().ct_eq(confirmation.as_bytes()))
}

/// The server's refusal of a PIN by the `[requests]` rules, in French (the rules are the
/// server's; only their wording is the portal's). An unknown sentence is shown as it is.
fn pin_refusal(message: &str) -> String {
    let why = message.strip_prefix("pin: ").unwrap_or(message);
    if why.contains("too easy to guess") {
        return "ce code PIN est trop facile à deviner (un chiffre répété, des chiffres qui se \
                suivent ou une paire répétée) : choisissez-en un autre"
            .to_owned();
    }
    if let Some(rest) = why.strip_prefix("the PIN must be ")
        && let Some((range, _)) = rest.split_once(" characters long")
        && let Some((min, max)) = range.split_once(" to ")
    {
        return format!("le code PIN doit compter de {min} à {max} caractères");
    }
    if why.contains("may contain only digits") {
        return "le code PIN ne peut contenir que des chiffres".to_owned();
    }
    if why.contains("may contain only letters and digits") {
        return "le code PIN ne peut contenir que des lettres et des chiffres".to_owned();
    }
    why.to_owned()
}

/// "Changer mon code PIN" for a key the person holds.
pub async fn change_pin_form(user: User, Path(serial): Path<String>) -> Page {
    okey_domain::validate_serial(&serial)
        .map_err(|e| PageError::Invalid(format!("numéro de série : {e}")))?;
    page(request_pages::change_pin(&user.session, &serial, None))
}

#[derive(Deserialize)]
pub struct ChangePinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: Zeroizing<String>,
    #[serde(default)]
    pin: Zeroizing<String>,
    #[serde(default)]
    confirmation: Zeroizing<String>,
}

/// The new PIN, typed twice, and a code read from the key. The server checks the code as a
/// login does and the PIN by the `[requests]` rules; a refusal comes back beside an empty form.
pub async fn change_pin(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    axum::Form(f): axum::Form<ChangePinForm>,
) -> Page {
    user.check(&f.csrf)?;
    let same = typed_twice(&f.pin, &f.confirmation);
    let refusal = if f.pin.is_empty() || f.code.trim().is_empty() {
        Some("saisissez le code de la clef et votre nouveau code PIN deux fois".to_owned())
    } else if !same {
        Some("les deux saisies du code PIN sont différentes".to_owned())
    } else {
        let req = app.grpc.request(
            &user.session.person,
            proto::ChangeHolderPinRequest {
                serial: serial.clone(),
                code: f.code.trim().to_owned(),
                pin: f.pin.as_str().to_owned(),
            },
        )?;
        match app.grpc.lifecycle_client().change_holder_pin(req).await {
            Ok(_) => None,
            Err(s) if s.code() == Code::InvalidArgument => Some(pin_refusal(s.message())),
            Err(s) if s.code() == Code::FailedPrecondition => Some(
                "le code de la clef n'est pas accepté (faux, déjà utilisé, ou clef bloquée : \
                 appuyez à nouveau sur le bouton de la clef, ou contactez l'assistance)"
                    .to_owned(),
            ),
            Err(s) => return Err(s.into()),
        }
    };
    match refusal {
        None => see_other("/ma-clef?fait=nouveau-pin"),
        Some(why) => {
            let mut r = page(request_pages::change_pin(
                &user.session,
                &serial,
                Some(&why),
            ))?;
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
    }
}

/// The form "demander / renouveler ma clef", with the directory's N+1 as the validator.
pub async fn new_request(State(app): State<Shared>, user: User) -> Page {
    let s = &user.session;
    let me = person_entry(&app, &s.person, &s.person).await;
    let manager = me.as_ref().and_then(|p| p.manager.clone());
    page(request_pages::new_request(s, manager.as_ref()))
}

/// File and send a request: the multipart form's fields and files.
pub async fn file_request(State(app): State<Shared>, user: User, mut form: Multipart) -> Page {
    let mut csrf = String::new();
    let mut key_type = String::new();
    let mut need = String::new();
    let mut reason = String::new();
    let mut validator = String::new();
    let mut attachments = Vec::new();
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        PageError::Invalid(format!(
            "le formulaire n'a pas pu être lu : {}",
            e.body_text()
        ))
    };
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "pieces" => {
                let file = field.file_name().unwrap_or_default().to_owned();
                let media = field.content_type().unwrap_or_default().to_owned();
                let content = field.bytes().await.map_err(unreadable)?;
                // A file input left empty sends one part with no name and no content.
                if file.is_empty() && content.is_empty() {
                    continue;
                }
                attachments.push(proto::RequestAttachment {
                    name: file,
                    media_type: media,
                    content: content.to_vec(),
                });
            }
            "csrf" | "type" | "besoin" | "motif" | "valideur" => {
                let text = field.text().await.map_err(unreadable)?;
                match name.as_str() {
                    "csrf" => csrf = text,
                    "type" => key_type = text,
                    "besoin" => need = text,
                    "motif" => reason = text,
                    _ => validator = text,
                }
            }
            _ => {}
        }
    }
    user.check(&csrf)?;
    let key_type = match key_type.as_str() {
        "hardware" | "software" => key_type,
        _ => {
            return Err(PageError::Invalid(
                "choisissez une clef matérielle ou logicielle".into(),
            ));
        }
    };
    let need = match need.as_str() {
        "" | "new" => "new".to_owned(),
        "renewal" => need,
        _ => {
            return Err(PageError::Invalid(
                "le besoin est nouveau ou renouvellement".into(),
            ));
        }
    };
    if attachments.is_empty() {
        return Err(PageError::Invalid(
            "joignez au moins un justificatif (PDF, PNG ou JPEG)".into(),
        ));
    }
    let d = app
        .grpc
        .requests()
        .file_request(app.grpc.request(
            &user.session.person,
            proto::FileRequestRequest {
                key_type,
                reason,
                attachments,
                validator: validator.trim().to_owned(),
                need,
                submit: true,
            },
        )?)
        .await?
        .into_inner();
    let id = d.request.map(|r| r.id).unwrap_or_default();
    see_other(&format!("{}?fait=envoyee", request_page(id)))
}

async fn detail(app: &Shared, person: &str, id: u64) -> Result<proto::RequestDetail, PageError> {
    Ok(app
        .grpc
        .requests()
        .show_request(app.grpc.request(person, proto::RequestRef { id })?)
        .await?
        .into_inner())
}

/// What the request page shows beside the request: the free pickup slots when the requester
/// may book one.
async fn view(
    app: &Shared,
    user: &User,
    id: u64,
    done: &str,
    pin_error: Option<String>,
) -> Result<RequestView, PageError> {
    let s = &user.session;
    let d = detail(app, &s.person, id).await?;
    let mut slots = Vec::new();
    if let Some(r) = &d.request
        && r.requester == s.person
        && r.state == "ready_for_pickup"
        && r.slot == 0
        && !r.lot.is_empty()
    {
        let req = app.grpc.request(
            &s.person,
            proto::ListPickupSlotsRequest { lot: r.lot.clone() },
        )?;
        if let Ok(list) = app.grpc.requests().list_pickup_slots(req).await {
            slots = list
                .into_inner()
                .slots
                .into_iter()
                .filter(|x| x.request == 0)
                .collect();
        }
    }
    Ok(RequestView {
        detail: d,
        slots,
        done: done.to_owned(),
        pin_error,
    })
}

/// One request: its state, attachments, history and the forms its state offers this person.
pub async fn show(
    State(app): State<Shared>,
    user: User,
    Path(id): Path<u64>,
    Query(f): Query<Done>,
) -> Page {
    let v = view(&app, &user, id, &f.fait, None).await?;
    page(request_pages::request(&user.session, &v))
}

/// One attachment, downloaded through GetRequestAttachment (the request's parties only).
pub async fn attachment(
    State(app): State<Shared>,
    user: User,
    Path((id, attachment)): Path<(u64, u64)>,
) -> Page {
    let a = app
        .grpc
        .requests()
        .get_request_attachment(app.grpc.request(
            &user.session.person,
            proto::GetRequestAttachmentRequest { id, attachment },
        )?)
        .await?
        .into_inner();
    // The media type is the one the server checked the content as; anything else is refused.
    let media = match a.media_type.as_str() {
        "application/pdf" => "application/pdf",
        "image/png" => "image/png",
        "image/jpeg" => "image/jpeg",
        other => {
            return Err(PageError::Internal(format!(
                "attachment {id}/{attachment} has media type {other}"
            )));
        }
    };
    let safe: String = a
        .name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let safe = if safe.is_empty() {
        format!("piece-{attachment}")
    } else {
        safe
    };
    let mut r = Response::new(Body::from(a.content));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r.extensions_mut().insert(Rendered);
    Ok(r)
}

/// The current charter's document (a PDF), to read before signing.
pub async fn charter(State(app): State<Shared>, user: User) -> Page {
    let c = app
        .grpc
        .requests()
        .get_charter(
            app.grpc
                .request(&user.session.person, proto::GetCharterRequest {})?,
        )
        .await?
        .into_inner();
    let mut r = Response::new(Body::from(c.content));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"charte-version-{}.pdf\"",
        c.version
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r.extensions_mut().insert(Rendered);
    Ok(r)
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    motif: String,
}

/// The validator (or the N+2) approves or refuses; a refusal says why.
pub async fn decide(
    State(app): State<Shared>,
    user: User,
    Path(id): Path<u64>,
    axum::Form(f): axum::Form<DecisionForm>,
) -> Page {
    user.check(&f.csrf)?;
    let approve = match f.decision.as_str() {
        "valider" => true,
        "refuser" => false,
        _ => return Err(PageError::Invalid("choisissez valider ou refuser".into())),
    };
    let reason = f.motif.trim().to_owned();
    if !approve && reason.is_empty() {
        return Err(PageError::Invalid(
            "un refus doit être motivé : le demandeur lira le motif".into(),
        ));
    }
    app.grpc
        .requests()
        .decide_request(app.grpc.request(
            &user.session.person,
            proto::DecideRequestRequest {
                id,
                approve,
                reason,
            },
        )?)
        .await?;
    see_other(&format!(
        "{}?fait={}",
        request_page(id),
        if approve { "validee" } else { "refusee" }
    ))
}

#[derive(Deserialize)]
pub struct CharterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    numero: String,
    #[serde(default)]
    lu: String,
}

/// The charter: the number printed at its bottom, and "I have read it" ticked.
pub async fn sign_charter(
    State(app): State<Shared>,
    user: User,
    Path(id): Path<u64>,
    axum::Form(f): axum::Form<CharterForm>,
) -> Page {
    user.check(&f.csrf)?;
    if f.lu != "oui" {
        return Err(PageError::Invalid(
            "cochez la case « J'ai lu la charte et je m'engage à la respecter »".into(),
        ));
    }
    app.grpc
        .requests()
        .sign_charter(app.grpc.request(
            &user.session.person,
            proto::SignCharterRequest {
                id,
                number: f.numero.trim().to_owned(),
                accept: true,
            },
        )?)
        .await?;
    see_other(&format!("{}?fait=charte", request_page(id)))
}

#[derive(Deserialize)]
pub struct PinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pin: Zeroizing<String>,
    #[serde(default)]
    confirmation: Zeroizing<String>,
}

/// The PIN, typed twice. A refusal by the `[requests]` PIN rules is shown on the request page
/// beside the form, which is empty again: the PIN never comes back.
pub async fn set_pin(
    State(app): State<Shared>,
    user: User,
    Path(id): Path<u64>,
    axum::Form(f): axum::Form<PinForm>,
) -> Page {
    user.check(&f.csrf)?;
    let same = typed_twice(&f.pin, &f.confirmation);
    let refusal = if f.pin.is_empty() {
        Some("saisissez votre code PIN dans les deux champs".to_owned())
    } else if !same {
        Some("les deux saisies du code PIN sont différentes".to_owned())
    } else {
        let req = app.grpc.request(
            &user.session.person,
            proto::SetRequestPinRequest {
                id,
                pin: f.pin.as_str().to_owned(),
            },
        )?;
        match app.grpc.requests().set_request_pin(req).await {
            Ok(_) => None,
            Err(s) if s.code() == Code::InvalidArgument => Some(pin_refusal(s.message())),
            Err(s) => return Err(s.into()),
        }
    };
    match refusal {
        None => see_other(&format!("{}?fait=pin", request_page(id))),
        Some(why) => {
            let v = view(&app, &user, id, "", Some(why)).await?;
            let mut r = page(request_pages::request(&user.session, &v))?;
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
    }
}

#[derive(Deserialize)]
pub struct BookForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    creneau: String,
}

/// Book one of the offered pickup slots.
pub async fn book(
    State(app): State<Shared>,
    user: User,
    Path(id): Path<u64>,
    axum::Form(f): axum::Form<BookForm>,
) -> Page {
    user.check(&f.csrf)?;
    let slot: u64 = f
        .creneau
        .parse()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| PageError::Invalid("choisissez un créneau".into()))?;
    app.grpc
        .requests()
        .book_pickup(
            app.grpc
                .request(&user.session.person, proto::BookPickupRequest { id, slot })?,
        )
        .await?;
    see_other(&format!("{}?fait=rendez-vous", request_page(id)))
}

#[derive(Deserialize)]
pub struct EnrolForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    plateforme: String,
}

/// A software key: the install instructions and the QR code of its otpauth URI, shown in this
/// one answer (not cached, not stored).
pub async fn enrol(
    State(app): State<Shared>,
    user: User,
    Path(id): Path<u64>,
    axum::Form(f): axum::Form<EnrolForm>,
) -> Page {
    user.check(&f.csrf)?;
    let platform = match f.plateforme.as_str() {
        "android" | "ios" => f.plateforme.clone(),
        _ => return Err(PageError::Invalid("choisissez Android ou iOS".into())),
    };
    let r = app
        .grpc
        .requests()
        .enrol_software_key(app.grpc.request(
            &user.session.person,
            proto::EnrolSoftwareKeyRequest { id, platform },
        )?)
        .await?
        .into_inner();
    let uri = Zeroizing::new(r.otpauth_uri);
    let parsed = okey_intake::KeyUri::parse(&uri)
        .map_err(|e| PageError::Internal(format!("the server sent a bad key URI: {e}")))?;
    let svg = parsed
        .qr_svg("QR code de votre clef logicielle, à scanner avec l'application")
        .map_err(|e| PageError::Internal(format!("QR code: {e}")))?;
    page(request_pages::enrolment(
        &user.session,
        id,
        &r.instructions,
        &svg,
    ))
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// The requester withdraws their request.
pub async fn cancel(
    State(app): State<Shared>,
    user: User,
    Path(id): Path<u64>,
    axum::Form(f): axum::Form<CsrfOnly>,
) -> Page {
    user.check(&f.csrf)?;
    app.grpc
        .requests()
        .cancel_request(
            app.grpc
                .request(&user.session.person, proto::RequestRef { id })?,
        )
        .await?;
    see_other(&format!("{}?fait=annulee", request_page(id)))
}

/// The requests waiting for this person's decision (the validator's home list); empty when
/// the server refuses.
pub async fn waiting_for(app: &Shared, person: &str) -> Vec<proto::KeyRequest> {
    let Ok(req) = app.grpc.request(
        person,
        proto::ListRequestsRequest {
            waiting_for_me: true,
        },
    ) else {
        return Vec::new();
    };
    match app.grpc.requests().list_requests(req).await {
        Ok(r) => r.into_inner().requests,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use okey_domain::request::PinPolicy;

    use super::pin_refusal;

    /// Every refusal the domain's PIN rules give, as the server sends it, comes out in French.
    #[test]
    fn every_pin_refusal_of_the_rules_is_worded_in_french() {
        let digits = PinPolicy::default();
        let letters = PinPolicy {
            digits_only: false,
            ..PinPolicy::default()
        };
        let cases = [
            (digits, "1234", "trop facile à deviner"),
            (digits, "12", "de 4 à 8 caractères"),
            (digits, "12a4", "que des chiffres"),
            (letters, "ab-d", "que des lettres et des chiffres"),
        ];
        for (policy, pin, french) in cases {
            let refusal = policy.check(pin).expect_err(pin);
            let said = pin_refusal(&format!("pin: {refusal}"));
            assert!(said.contains(french), "{pin}: {said}");
            assert!(
                !said.contains("PIN must") && !said.contains("only"),
                "{said}"
            );
        }
    }
}

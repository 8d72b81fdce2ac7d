//! Routes, the security headers, the login and the handlers. Each handler turns a form or a
//! path into one gRPC request made for the session's person, and renders the answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use okey_server::proto;
use okey_server::proto::directory_service_client::DirectoryServiceClient;
use okey_server::proto::lifecycle_service_client::LifecycleServiceClient;
use okey_server::proto::request_service_client::RequestServiceClient;
use okey_server::proto::support_service_client::SupportServiceClient;
use okey_server::proto::token_service_client::TokenServiceClient;
use serde::Deserialize;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use zeroize::Zeroizing;

use crate::oidc::Oidc;
use crate::pages;
use crate::requests;
use crate::session::{Session, Sessions};

/// Where the provider sends the browser back.
pub const CALLBACK: &str = "/oidc/retour";
/// Where the provider sends the browser back after a logout.
pub const LOGGED_OUT: &str = "/deconnecte";
const SESSION_COOKIE: &str = "okey_session";
const LOGIN_COOKIE: &str = "okey_connexion";

/// The Content-Security-Policy of every answer: nothing but this origin's style sheet; no
/// script, no frame, forms only to this origin.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// okey's gRPC services, called as the portal for one person at a time.
pub struct Grpc {
    channel: Channel,
    bearer: Zeroizing<String>,
}

impl Grpc {
    /// A lazy channel to `addr` (loopback when `addr` is a wildcard).
    pub fn new(
        target: okey_server::serve::PortalTarget,
        key: Zeroizing<String>,
    ) -> Result<Self, String> {
        use okey_server::serve::PortalTarget;
        let channel = match target {
            PortalTarget::Tcp(addr) => {
                let host = if addr.ip().is_unspecified() {
                    match addr {
                        SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], addr.port())),
                        SocketAddr::V6(_) => {
                            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
                        }
                    }
                } else {
                    addr
                };
                tonic::transport::Endpoint::from_shared(format!("http://{host}"))
                    .map_err(|e| format!("gRPC address {host}: {e}"))?
                    .connect_lazy()
            }
            PortalTarget::Unix(path) => {
                // The URI is only the HTTP/2 authority: the connector opens the socket.
                tonic::transport::Endpoint::from_static("http://okey.invalid")
                    .connect_with_connector_lazy(tower::service_fn(
                        move |_: tonic::transport::Uri| {
                            let path = path.clone();
                            async move {
                                let stream = tokio::net::UnixStream::connect(path).await?;
                                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                            }
                        },
                    ))
            }
        };
        Ok(Grpc {
            channel,
            bearer: Zeroizing::new(format!("Bearer {}", key.as_str())),
        })
    }

    /// `message` with the portal's own credential, acting for nobody.
    fn as_portal<T>(&self, message: T) -> Result<tonic::Request<T>, String> {
        let mut r = tonic::Request::new(message);
        let mut auth = MetadataValue::try_from(self.bearer.as_str())
            .map_err(|_| "the portal key is not ASCII".to_owned())?;
        auth.set_sensitive(true);
        r.metadata_mut().insert("authorization", auth);
        Ok(r)
    }

    pub(crate) fn request<T>(
        &self,
        person: &str,
        message: T,
    ) -> Result<tonic::Request<T>, PageError> {
        let mut r = self.as_portal(message).map_err(PageError::Internal)?;
        let acting = MetadataValue::try_from(person)
            .map_err(|_| PageError::Internal("a person id is not ASCII".into()))?;
        r.metadata_mut()
            .insert(okey_server::callers::ACTING_PERSON, acting);
        Ok(r)
    }

    /// Whether okey's services answer the portal's own key (no person): the readiness check.
    async fn reachable(&self) -> Result<(), String> {
        let r = self.as_portal(proto::WhoAmIRequest {})?;
        let me = proto::caller_service_client::CallerServiceClient::new(self.channel.clone())
            .who_am_i(r)
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        if me.roles.iter().any(|r| r == "portal") {
            Ok(())
        } else {
            Err(format!("the portal's key has roles {:?}", me.roles))
        }
    }

    fn lifecycle(&self) -> LifecycleServiceClient<Channel> {
        LifecycleServiceClient::new(self.channel.clone())
    }

    fn tokens(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::new(self.channel.clone())
    }

    fn directory(&self) -> DirectoryServiceClient<Channel> {
        DirectoryServiceClient::new(self.channel.clone())
    }

    pub(crate) fn requests(&self) -> RequestServiceClient<Channel> {
        RequestServiceClient::new(self.channel.clone())
            .max_decoding_message_size(okey_server::MAX_REQUEST_MESSAGE_BYTES)
    }

    pub(crate) fn support(&self) -> SupportServiceClient<Channel> {
        SupportServiceClient::new(self.channel.clone())
    }

    pub(crate) fn lifecycle_client(&self) -> LifecycleServiceClient<Channel> {
        self.lifecycle()
    }
}

/// Shared state of the portal.
pub struct App {
    pub grpc: Grpc,
    pub oidc: Option<Oidc>,
    pub sessions: Sessions,
    /// Cookies are `Secure` (the public URL is https).
    pub secure: bool,
    /// The portal's address as browsers reach it (no trailing slash).
    pub public_url: String,
    pub utc_offset_minutes: i32,
    /// The zone pages are dated in (receipts too, unless `utc_offset_minutes` says otherwise).
    pub zone: okey_server::Zone,
}

pub(crate) type Shared = Arc<App>;

/// Every refusal and failure, rendered as a French page.
#[derive(Debug)]
pub enum PageError {
    /// No live session (with the local path to come back to after login, for a GET).
    LoginRequired(Option<String>),
    /// A form without this session's CSRF token.
    Csrf,
    /// A login that did not complete.
    Login(String),
    /// Login is not configured.
    NoProvider,
    /// The identity provider cannot be reached (details logged only).
    Provider(String),
    /// The server refused or failed.
    Grpc(tonic::Status),
    /// Bad input caught here.
    Invalid(String),
    /// Anything else (details logged only).
    Internal(String),
}

impl From<tonic::Status> for PageError {
    fn from(s: tonic::Status) -> Self {
        PageError::Grpc(s)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, text, detail) = match &self {
            PageError::LoginRequired(_) => (
                StatusCode::UNAUTHORIZED,
                "Connexion requise",
                "Cette page demande d'être connecté. Votre session a peut-être expiré ou pris fin.",
                None,
            ),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "Formulaire refusé",
                "Ce formulaire ne porte pas le jeton de sécurité de votre session : rien n'a été \
                 modifié. Rechargez la page et recommencez.",
                None,
            ),
            PageError::Login(why) => {
                tracing::warn!(why = %why, "portal login refused");
                (
                    StatusCode::UNAUTHORIZED,
                    "Connexion refusée",
                    "La connexion n'a pas pu être vérifiée (jeton d'identité invalide, expiré ou \
                     inattendu, ou personne inconnue de l'annuaire). Recommencez la connexion.",
                    None,
                )
            }
            PageError::NoProvider => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Connexion non configurée",
                "Aucun fournisseur d'identité n'est configuré pour ce portail (table [portal] : \
                 issuer et client_id).",
                None,
            ),
            PageError::Provider(why) => {
                tracing::error!(why = %why, "the identity provider cannot be used");
                (
                    StatusCode::BAD_GATEWAY,
                    "Fournisseur d'identité indisponible",
                    "Le service de connexion de l'académie ne répond pas. Réessayez dans un \
                     instant.",
                    None,
                )
            }
            PageError::Invalid(why) => (
                StatusCode::BAD_REQUEST,
                "Saisie incorrecte",
                "La demande n'est pas valide : rien n'a été modifié.",
                Some(why.clone()),
            ),
            PageError::Internal(why) => {
                tracing::error!(why = %why, "portal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Erreur du portail",
                    "Une erreur est survenue. Réessayez plus tard ; si elle persiste, contactez \
                     le centre de support.",
                    None,
                )
            }
            PageError::Grpc(s) => grpc_page(s),
        };
        let login = match &self {
            PageError::LoginRequired(back) => Some(back.as_deref().unwrap_or("/")),
            PageError::Login(_) => Some("/"),
            _ => None,
        };
        let mut r = (
            status,
            pages::error_page(title, text, detail.as_deref(), login),
        )
            .into_response();
        r.extensions_mut().insert(Rendered);
        r
    }
}

fn grpc_page(s: &tonic::Status) -> (StatusCode, &'static str, &'static str, Option<String>) {
    let detail = Some(s.message().to_owned());
    match s.code() {
        Code::PermissionDenied => (
            StatusCode::FORBIDDEN,
            "Accès refusé",
            "Vous n'avez pas le droit de faire cela, ou cette clef, ce lot ou cette personne ne \
             relève pas de vos fonctions. Rien n'a été modifié.",
            detail,
        ),
        Code::NotFound => (
            StatusCode::NOT_FOUND,
            "Introuvable",
            "Ce que vous cherchez n'existe pas.",
            detail,
        ),
        Code::InvalidArgument => (
            StatusCode::BAD_REQUEST,
            "Saisie incorrecte",
            "La demande n'est pas valide : rien n'a été modifié.",
            detail,
        ),
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => (
            StatusCode::CONFLICT,
            "Action impossible",
            "Cette action n'est pas possible dans l'état actuel de la clef ou du lot. Rien n'a \
             été modifié.",
            detail,
        ),
        _ => {
            tracing::error!(code = ?s.code(), message = s.message(), "the portal's gRPC call failed");
            (
                StatusCode::BAD_GATEWAY,
                "Service indisponible",
                "Le service okey ne répond pas. Réessayez dans un instant.",
                None,
            )
        }
    }
}

/// Marks an answer as one of the portal's own pages (the error page middleware leaves it).
#[derive(Clone, Copy)]
pub(crate) struct Rendered;

pub(crate) type Page = Result<Response, PageError>;

pub(crate) fn page(markup: maud::Markup) -> Page {
    let mut r = markup.into_response();
    r.extensions_mut().insert(Rendered);
    Ok(r)
}

pub(crate) fn see_other(to: &str) -> Page {
    let mut r = Redirect::to(to).into_response();
    r.extensions_mut().insert(Rendered);
    Ok(r)
}

/// The logged-in person of a request.
pub struct User {
    pub session: Session,
    cookie: Zeroizing<String>,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Shared> for User {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, PageError> {
        let back = || {
            let p = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            PageError::LoginRequired(
                (parts.method == axum::http::Method::GET && local_path(p)).then(|| p.to_owned()),
            )
        };
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(back)?;
        let session = app.sessions.get(id).ok_or_else(back)?;
        Ok(User {
            session,
            cookie: Zeroizing::new(id.to_owned()),
        })
    }
}

impl User {
    pub(crate) fn check(&self, csrf: &str) -> Result<(), PageError> {
        if self.session.csrf_matches(csrf) {
            Ok(())
        } else {
            tracing::warn!(person = %self.session.person, "portal form without its CSRF token");
            Err(PageError::Csrf)
        }
    }
}

/// An optional user, for the pages anyone may see.
pub struct MaybeUser(Option<User>);

impl FromRequestParts<Shared> for MaybeUser {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, PageError> {
        Ok(MaybeUser(User::from_request_parts(parts, app).await.ok()))
    }
}

fn set_cookie(app: &App, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
    let secure = if app.secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Security headers on every answer, and the French error page for every error that is not
/// one of the portal's own pages (unknown route, wrong method, unreadable form).
async fn guard(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<Rendered>().is_none()
    {
        let (title, text) = match status {
            StatusCode::NOT_FOUND => (
                "Page introuvable",
                "Cette adresse ne correspond à aucune page du portail.",
            ),
            StatusCode::METHOD_NOT_ALLOWED => (
                "Action non permise",
                "Cette adresse ne s'utilise pas ainsi.",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "Envoi trop volumineux",
                "Ce que vous avez envoyé est trop gros.",
            ),
            s if s.is_client_error() => (
                "Demande incorrecte",
                "La demande n'a pas pu être lue : rien n'a été modifié.",
            ),
            _ => (
                "Erreur du portail",
                "Une erreur est survenue. Réessayez plus tard.",
            ),
        };
        response = (status, pages::error(title, text, None)).into_response();
    }
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn hsts(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if app.secure {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// The portal's routes.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/static/portal.css", get(stylesheet))
        .route("/sante", get(health))
        .route("/connexion", get(login))
        .route(CALLBACK, get(callback))
        .route("/deconnexion", post(logout))
        .route(LOGGED_OUT, get(logged_out))
        .route("/lots", get(lots))
        .route("/lots/{lot}", get(lot_keys))
        .route("/lots/{lot}/commandes", get(orders).post(order))
        .route("/lots/{lot}/commandes/{id}/annuler", post(cancel_order))
        .route("/lots/{lot}/creneaux", get(slots).post(offer_slot))
        .route("/clefs/{serial}", get(key))
        .route("/clefs/{serial}/perdue", post(key_lost))
        .route("/clefs/{serial}/stock", post(key_restock))
        .route("/clefs/{serial}/remise", post(key_hand_over))
        .route("/clefs/{serial}/restitution", post(key_return))
        .route("/clefs/{serial}/bordereaux/{number}", get(receipt_pdf))
        .route("/support", get(support))
        .route("/support/{serial}/retrouvee", post(found))
        .route("/support/{serial}/deblocage", post(unlock))
        .route("/support/{serial}/resynchronisation", post(resync))
        .route("/ma-clef", get(requests::my_key))
        .route("/ma-clef/{serial}/perdue", post(requests::declare_lost))
        .route(
            "/ma-clef/{serial}/pin",
            get(requests::change_pin_form).post(requests::change_pin),
        )
        .route("/demandes/nouvelle", get(requests::new_request))
        .route("/charte", get(requests::charter))
        .route(
            "/demandes",
            post(requests::file_request)
                .layer(axum::extract::DefaultBodyLimit::max(requests::FORM_LIMIT)),
        )
        .route("/demandes/{id}", get(requests::show))
        .route(
            "/demandes/{id}/pieces/{attachment}",
            get(requests::attachment),
        )
        .route("/demandes/{id}/decision", post(requests::decide))
        .route("/demandes/{id}/charte", post(requests::sign_charter))
        .route("/demandes/{id}/pin", post(requests::set_pin))
        .route("/demandes/{id}/rendez-vous", post(requests::book))
        .route("/demandes/{id}/enrolement", post(requests::enrol))
        .route("/demandes/{id}/annulation", post(requests::cancel))
        .route(
            "/support/dossiers",
            get(crate::cases::list).post(crate::cases::open).layer(
                axum::extract::DefaultBodyLimit::max(crate::cases::FORM_LIMIT),
            ),
        )
        .route("/support/dossiers/nouveau", get(crate::cases::new_case))
        .route(
            "/support/dossiers/{number}/attribution",
            post(crate::cases::assign),
        )
        .route(
            "/support/dossiers/{number}/resolution",
            post(crate::cases::resolve),
        )
        .route("/support/dossiers/{number}", get(crate::cases::show))
        .route(
            "/support/dossiers/{number}/reponse",
            post(crate::cases::reply),
        )
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn_with_state(app.clone(), hsts))
        .layer(middleware::from_fn(guard))
        .with_state(app)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        pages::error(
            "Page introuvable",
            "Cette adresse ne correspond à aucune page du portail.",
            None,
        ),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::CSS,
    )
        .into_response();
    r.extensions_mut().insert(Rendered);
    r
}

async fn home(State(app): State<Shared>, MaybeUser(user): MaybeUser) -> Page {
    let Some(user) = user else {
        return page(pages::welcome(app.oidc.is_some()));
    };
    let s = &user.session;
    let lots = app
        .grpc
        .lifecycle()
        .list_lots(app.grpc.request(&s.person, proto::ListLotsRequest {})?)
        .await?
        .into_inner()
        .lots;
    let me = person_entry(&app, &s.person, &s.person).await;
    let waiting = requests::waiting_for(&app, &s.person).await;
    page(pages::home(s, me.as_ref(), &lots, &waiting))
}

/// The directory entry of `id`, as `viewer` may see it (`None` when refused or absent).
pub(crate) async fn person_entry(
    app: &App,
    viewer: &str,
    id: &str,
) -> Option<proto::DirectoryPerson> {
    let req = app
        .grpc
        .request(viewer, proto::DirectoryRef { id: id.to_owned() })
        .ok()?;
    match app.grpc.directory().show_directory_entry(req).await {
        Ok(r) => match r.into_inner().entry {
            Some(proto::directory_entry::Entry::Person(p)) => Some(p),
            _ => None,
        },
        Err(_) => None,
    }
}

/// A path of this portal to come back to: one leading `/` (not `//`, which browsers read as
/// another host), printable ASCII, no backslash, short.
fn local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && p.len() <= 512
        && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    retour: String,
}

async fn login(State(app): State<Shared>, Query(q): Query<LoginQuery>) -> Page {
    let oidc = app.oidc.as_ref().ok_or(PageError::NoProvider)?;
    let back = if local_path(&q.retour) {
        q.retour
    } else {
        "/".to_owned()
    };
    let start = oidc
        .start()
        .await
        .map_err(|e| PageError::Provider(e.to_string()))?;
    let id = app
        .sessions
        .begin_login(start.state, start.nonce, start.pkce_verifier, back)
        .map_err(|e| PageError::Internal(format!("random generator: {e}")))?;
    let mut r = Redirect::to(&start.url).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &app,
            LOGIN_COOKIE,
            &id,
            CALLBACK,
            crate::session::LOGIN_TTL.as_secs(),
        ),
    );
    r.extensions_mut().insert(Rendered);
    Ok(r)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(app): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Page {
    let oidc = app.oidc.as_ref().ok_or(PageError::NoProvider)?;
    if let Some(e) = q.error {
        return Err(PageError::Login(format!("the provider answered {e}")));
    }
    let pending = cookie(&headers, LOGIN_COOKIE)
        .and_then(|id| app.sessions.take_login(id))
        .ok_or_else(|| PageError::Login("no pending login for this browser".into()))?;
    let state = q.state.unwrap_or_default();
    if !crate::session::same(&state, &pending.state) {
        return Err(PageError::Login(
            "the state does not match this login".into(),
        ));
    }
    let code = q
        .code
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| PageError::Login("no authorisation code".into()))?;
    let login = oidc
        .finish(&code, &pending.nonce, &pending.pkce_verifier)
        .await
        .map_err(|e| match e {
            crate::oidc::LoginError::Discovery(_) => PageError::Provider(e.to_string()),
            _ => PageError::Login(e.to_string()),
        })?;
    let person = login.person;
    // The person must be in the directory: the server's own check (Okey::acting) decides.
    app.grpc
        .lifecycle()
        .list_lots(app.grpc.request(&person, proto::ListLotsRequest {})?)
        .await
        .map_err(|s| PageError::Login(format!("{person}: {}", s.message())))?;
    let name = person_entry(&app, &person, &person)
        .await
        .map(|p| p.name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| person.clone());
    let id = app
        .sessions
        .open(&person, &name, login.id_token)
        .map_err(|e| PageError::Internal(format!("random generator: {e}")))?;
    tracing::info!(person = %person, "portal login");
    let mut r = Redirect::to(&pending.back).into_response();
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&app, SESSION_COOKIE, &id, "/", app.sessions.ttl().as_secs()),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&app, LOGIN_COOKIE, "", CALLBACK, 0),
    );
    r.extensions_mut().insert(Rendered);
    Ok(r)
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(app): State<Shared>,
    user: User,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Page {
    user.check(&f.csrf)?;
    app.sessions.close(&user.cookie);
    tracing::info!(person = %user.session.person, "portal logout");
    // Then at the provider (RP-initiated logout), which sends the browser back to
    // `LOGGED_OUT`. A refresh, not a redirect: the CSP's form-action keeps this form's
    // answer on this origin.
    let at_provider = match &app.oidc {
        Some(oidc) => {
            oidc.logout_url(
                &user.session.id_token,
                &format!("{}{LOGGED_OUT}", app.public_url),
            )
            .await
        }
        None => None,
    };
    let mut r = match at_provider {
        Some(url) => page(pages::leaving(&url))?,
        None => page(pages::logged_out())?,
    };
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&app, SESSION_COOKIE, "", "/", 0),
    );
    Ok(r)
}

/// Readiness for a load balancer or a supervisor: 200 when okey's services answer the
/// portal, 503 otherwise (the cause in the log, not on the page).
async fn health(State(app): State<Shared>) -> Response {
    let (status, text) = match app.grpc.reachable().await {
        Ok(()) => (StatusCode::OK, "okey : portail et services joignables\n"),
        Err(why) => {
            tracing::warn!(%why, "portal readiness: okey's services do not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "okey : les services ne répondent pas au portail\n",
            )
        }
    };
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response();
    r.extensions_mut().insert(Rendered);
    r
}

async fn logged_out() -> Page {
    page(pages::logged_out())
}

async fn lots(State(app): State<Shared>, user: User) -> Page {
    let s = &user.session;
    let lots = app
        .grpc
        .lifecycle()
        .list_lots(app.grpc.request(&s.person, proto::ListLotsRequest {})?)
        .await?
        .into_inner()
        .lots;
    page(pages::lots(s, &lots))
}

/// The filter and sort of the keys table.
#[derive(Deserialize, Default)]
pub struct KeyFilter {
    /// A key state name (`delivered`, ...), empty: all.
    #[serde(default)]
    pub etat: String,
    /// Part of a holder's id or a serial, case-insensitive.
    #[serde(default)]
    pub recherche: String,
    /// `serie`, `etat`, `titulaire` or `validite`.
    #[serde(default)]
    pub tri: String,
    /// `desc` for descending.
    #[serde(default)]
    pub ordre: String,
}

async fn show_lot(app: &App, person: &str, lot: &str) -> Result<proto::LotDetail, PageError> {
    Ok(app
        .grpc
        .lifecycle()
        .show_lot(
            app.grpc
                .request(person, proto::LotRef { id: lot.to_owned() })?,
        )
        .await?
        .into_inner())
}

async fn lot_keys(
    State(app): State<Shared>,
    user: User,
    Path(lot): Path<String>,
    Query(filter): Query<KeyFilter>,
) -> Page {
    let s = &user.session;
    let detail = show_lot(&app, &s.person, &lot).await?;
    page(pages::lot_keys(s, &detail, &filter))
}

async fn orders(State(app): State<Shared>, user: User, Path(lot): Path<String>) -> Page {
    let s = &user.session;
    let detail = show_lot(&app, &s.person, &lot).await?;
    page(pages::orders(s, &detail))
}

#[derive(Deserialize)]
struct OrderForm {
    #[serde(default)]
    csrf: String,
    quantite: String,
    #[serde(default)]
    commentaire: String,
}

async fn order(
    State(app): State<Shared>,
    user: User,
    Path(lot): Path<String>,
    axum::Form(f): axum::Form<OrderForm>,
) -> Page {
    user.check(&f.csrf)?;
    let quantity: u32 = f
        .quantite
        .trim()
        .parse()
        .ok()
        .filter(|q| (1..=10_000).contains(q))
        .ok_or_else(|| PageError::Invalid("la quantité est un nombre de 1 à 10 000".into()))?;
    app.grpc
        .lifecycle()
        .order_keys(app.grpc.request(
            &user.session.person,
            proto::OrderKeysRequest {
                lot: lot.clone(),
                quantity,
                comment: f.commentaire.trim().to_owned(),
            },
        )?)
        .await?;
    see_other(&format!("/lots/{}/commandes", pages::path(&lot)))
}

async fn cancel_order(
    State(app): State<Shared>,
    user: User,
    Path((lot, id)): Path<(String, u64)>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Page {
    user.check(&f.csrf)?;
    let detail = show_lot(&app, &user.session.person, &lot).await?;
    if !detail.orders.iter().any(|o| o.id == id) {
        return Err(PageError::Invalid(format!(
            "la commande {id} n'est pas de ce lot"
        )));
    }
    app.grpc
        .lifecycle()
        .close_order(app.grpc.request(
            &user.session.person,
            proto::CloseOrderRequest {
                id,
                serials: Vec::new(),
                cancel: true,
            },
        )?)
        .await?;
    see_other(&format!("/lots/{}/commandes", pages::path(&lot)))
}

async fn lot_slots(
    app: &App,
    person: &str,
    lot: &str,
) -> Result<Vec<proto::PickupSlot>, PageError> {
    let mut slots = app
        .grpc
        .requests()
        .list_pickup_slots(app.grpc.request(
            person,
            proto::ListPickupSlotsRequest {
                lot: lot.to_owned(),
            },
        )?)
        .await?
        .into_inner()
        .slots;
    slots.sort_by_key(|s| (s.starts_at, s.id));
    Ok(slots)
}

/// The lot's pickup slots, and a form to offer one.
async fn slots(State(app): State<Shared>, user: User, Path(lot): Path<String>) -> Page {
    let s = &user.session;
    // The lot's own page decides who may see it; the slots follow.
    show_lot(&app, &s.person, &lot).await?;
    let list = lot_slots(&app, &s.person, &lot).await?;
    page(pages::slots(s, &lot, &list))
}

#[derive(Deserialize)]
struct SlotForm {
    #[serde(default)]
    csrf: String,
    debut: String,
    lieu: String,
}

async fn offer_slot(
    State(app): State<Shared>,
    user: User,
    Path(lot): Path<String>,
    axum::Form(f): axum::Form<SlotForm>,
) -> Page {
    user.check(&f.csrf)?;
    let zone = &user.session.zone;
    let starts_at = zone.minute(&f.debut).ok_or_else(|| {
        PageError::Invalid(format!(
            "la date et l'heure s'écrivent AAAA-MM-JJTHH:MM ({}) et doivent exister à cette heure-là",
            crate::pages::zone_label(zone)
        ))
    })?;
    let place = f.lieu.trim();
    if place.is_empty() {
        return Err(PageError::Invalid("indiquez le lieu du retrait".into()));
    }
    app.grpc
        .requests()
        .offer_pickup_slot(app.grpc.request(
            &user.session.person,
            proto::OfferPickupSlotRequest {
                lot: lot.clone(),
                starts_at,
                place: place.to_owned(),
            },
        )?)
        .await?;
    see_other(&format!("/lots/{}/creneaux", pages::path(&lot)))
}

pub(crate) async fn show_key(
    app: &App,
    person: &str,
    serial: &str,
) -> Result<proto::KeyDetail, PageError> {
    Ok(app
        .grpc
        .lifecycle()
        .show_key(app.grpc.request(
            person,
            proto::KeyRef {
                serial: serial.to_owned(),
            },
        )?)
        .await?
        .into_inner())
}

#[derive(Deserialize)]
struct Flash {
    #[serde(default)]
    fait: String,
}

async fn key(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    Query(flash): Query<Flash>,
) -> Page {
    let s = &user.session;
    let detail = show_key(&app, &s.person, &serial).await?;
    page(pages::key(s, &detail, &flash.fait))
}

#[derive(Deserialize)]
struct LostForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    commentaire: String,
}

async fn change(
    app: &App,
    user: &User,
    serial: &str,
    action: proto::KeyChangeAction,
    comment: String,
) -> Result<(), PageError> {
    app.grpc
        .lifecycle()
        .change_key(app.grpc.request(
            &user.session.person,
            proto::ChangeKeyRequest {
                serial: serial.to_owned(),
                action: action as i32,
                comment,
                person: String::new(),
                at: 0,
            },
        )?)
        .await?;
    Ok(())
}

fn back_to_key(serial: &str, done: &str) -> Page {
    see_other(&format!("/clefs/{}?fait={done}", pages::path(serial)))
}

async fn key_lost(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    axum::Form(f): axum::Form<LostForm>,
) -> Page {
    user.check(&f.csrf)?;
    change(
        &app,
        &user,
        &serial,
        proto::KeyChangeAction::Lost,
        f.commentaire.trim().to_owned(),
    )
    .await?;
    back_to_key(&serial, "perdue")
}

async fn key_restock(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Page {
    user.check(&f.csrf)?;
    change(
        &app,
        &user,
        &serial,
        proto::KeyChangeAction::Restock,
        String::new(),
    )
    .await?;
    back_to_key(&serial, "stock")
}

#[derive(Deserialize)]
struct HandOverForm {
    #[serde(default)]
    csrf: String,
    titulaire: String,
    #[serde(default)]
    lieu: String,
}

async fn key_hand_over(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    axum::Form(f): axum::Form<HandOverForm>,
) -> Page {
    user.check(&f.csrf)?;
    let to = f.titulaire.trim();
    if to.is_empty() {
        return Err(PageError::Invalid(
            "indiquez le titulaire (identifiant de l'annuaire)".into(),
        ));
    }
    let done = app
        .grpc
        .lifecycle()
        .hand_over(app.grpc.request(
            &user.session.person,
            proto::HandOverRequest {
                items: vec![proto::HandOverItem {
                    serial: serial.clone(),
                    to: to.to_owned(),
                    place: f.lieu.trim().to_owned(),
                    until: 0,
                }],
            },
        )?)
        .await?
        .into_inner();
    if done.handed_over.is_empty() {
        return Err(PageError::Internal("a hand-over answered no key".into()));
    }
    back_to_key(&serial, "remise")
}

#[derive(Deserialize)]
struct ReturnForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    etat: String,
    #[serde(default)]
    lieu: String,
}

async fn key_return(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    axum::Form(f): axum::Form<ReturnForm>,
) -> Page {
    user.check(&f.csrf)?;
    let condition = match f.etat.as_str() {
        "" | "good" => "good",
        "damaged" => "damaged",
        "broken" => "broken",
        _ => {
            return Err(PageError::Invalid(
                "l'état rendu est bon, abîmé ou cassé".into(),
            ));
        }
    };
    app.grpc
        .lifecycle()
        .return_key(app.grpc.request(
            &user.session.person,
            proto::ReturnKeyRequest {
                serial: serial.clone(),
                condition: condition.to_owned(),
                place: f.lieu.trim().to_owned(),
            },
        )?)
        .await?;
    back_to_key(&serial, "restitution")
}

async fn receipt_pdf(
    State(app): State<Shared>,
    user: User,
    Path((serial, number)): Path<(String, String)>,
) -> Page {
    let pdf = app
        .grpc
        .lifecycle()
        .get_receipt_pdf(app.grpc.request(
            &user.session.person,
            proto::GetReceiptRequest {
                serial,
                number,
                utc_offset_minutes: match app.utc_offset_minutes {
                    0 => app.zone.offset_minutes(okey_server::clock::now()),
                    set => set,
                },
            },
        )?)
        .await?
        .into_inner();
    let safe: String = pdf
        .number
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let mut r = Response::new(Body::from(pdf.pdf));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"bordereau-{safe}.pdf\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r.extensions_mut().insert(Rendered);
    Ok(r)
}

#[derive(Deserialize)]
struct SupportQuery {
    #[serde(default)]
    numero: String,
}

async fn support(State(app): State<Shared>, user: User, Query(q): Query<SupportQuery>) -> Page {
    let s = &user.session;
    let serial = q.numero.trim();
    if serial.is_empty() {
        return page(pages::support(s, "", None, None, None, None));
    }
    let detail = show_key(&app, &s.person, serial).await?;
    let holder = match detail.key.as_ref().map(|k| k.holder.as_str()) {
        Some(h) if !h.is_empty() => person_entry(&app, &s.person, h).await,
        _ => None,
    };
    page(pages::support(
        s,
        serial,
        Some(&detail),
        holder.as_ref(),
        None,
        None,
    ))
}

async fn found(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Page {
    user.check(&f.csrf)?;
    let s = &user.session;
    let decision = app
        .grpc
        .lifecycle()
        .found_key(app.grpc.request(
            &s.person,
            proto::KeyRef {
                serial: serial.clone(),
            },
        )?)
        .await?
        .into_inner();
    let detail = show_key(&app, &s.person, &serial).await?;
    page(pages::support(
        s,
        &serial,
        Some(&detail),
        None,
        Some(&decision),
        None,
    ))
}

async fn unlock(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Page {
    user.check(&f.csrf)?;
    let s = &user.session;
    app.grpc
        .tokens()
        .unlock_token(app.grpc.request(
            &s.person,
            proto::TokenRef {
                serial: serial.clone(),
            },
        )?)
        .await?;
    let detail = show_key(&app, &s.person, &serial).await?;
    let notice = "La clef est débloquée : son compteur d'échecs est remis à zéro.";
    page(pages::support(
        s,
        &serial,
        Some(&detail),
        None,
        None,
        Some(notice),
    ))
}

#[derive(Deserialize)]
struct ResyncForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    premier: Zeroizing<String>,
    #[serde(default)]
    second: Zeroizing<String>,
}

async fn resync(
    State(app): State<Shared>,
    user: User,
    Path(serial): Path<String>,
    axum::Form(f): axum::Form<ResyncForm>,
) -> Page {
    user.check(&f.csrf)?;
    let s = &user.session;
    let first = Zeroizing::new(f.premier.trim().to_owned());
    let second = Zeroizing::new(f.second.trim().to_owned());
    let ok = |c: &str| (6..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit());
    if !(ok(&first) && ok(&second)) {
        return Err(PageError::Invalid(
            "saisissez deux codes de 6 à 10 chiffres".into(),
        ));
    }
    app.grpc
        .tokens()
        .resync_token(app.grpc.request(
            &s.person,
            proto::ResyncTokenRequest {
                serial: serial.clone(),
                first_code: first.to_string(),
                second_code: second.to_string(),
            },
        )?)
        .await?;
    let detail = show_key(&app, &s.person, &serial).await?;
    let notice = "La clef est resynchronisée.";
    page(pages::support(
        s,
        &serial,
        Some(&detail),
        None,
        None,
        Some(notice),
    ))
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_a_local_path_is_a_place_to_come_back_to() {
        for ok in ["/", "/demandes/7", "/lots/2D-A?tri=etat&ordre=desc"] {
            assert!(local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "demandes/7",
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "/a b",
            "/\u{e9}",
        ] {
            assert!(!local_path(bad), "{bad:?}");
        }
        assert!(!local_path(&format!("/{}", "a".repeat(600))));
    }
}

//! OpenID Connect login: the authorisation code flow with PKCE (S256) and a nonce, through the
//! `openidconnect` crate.
//!
//! The provider's metadata and signing keys are discovered from the issuer on the first login
//! (and again after a failure), so `okey serve` starts while the provider is down. The ID token
//! is accepted only when its signature verifies with the provider's published keys (the
//! algorithms the provider announces; never `none`), its issuer is the configured one, its
//! audience holds this client, it has not expired, and it carries the nonce of this login.
//! The person is the value of the configured claim of that verified token.
//!
//! Logging out of the portal also ends the session at the provider when it announces an
//! `end_session_endpoint` (OpenID Connect RP-Initiated Logout 1.0): the browser is sent there
//! with the ID token of the login as `id_token_hint`, and comes back to the portal's
//! logged-out page.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndSessionUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a login failed. The sentence is for the log; the person sees a French page.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The provider could not be reached or described itself wrongly.
    #[error("provider discovery: {0}")]
    Discovery(String),
    /// The code exchange failed.
    #[error("code exchange: {0}")]
    Exchange(String),
    /// The ID token is missing or was refused (signature, issuer, audience, expiry, nonce).
    #[error("ID token refused: {0}")]
    IdToken(String),
    /// The configured claim is absent or not a person id.
    #[error("claim {claim}: {why}")]
    Claim {
        /// The claim's name.
        claim: String,
        /// Why.
        why: String,
    },
}

/// The login set-up of one provider.
pub struct Oidc {
    issuer: IssuerUrl,
    client_id: ClientId,
    secret: Option<Zeroizing<String>>,
    redirect: RedirectUrl,
    claim: String,
    http: openidconnect::reqwest::Client,
    client: Mutex<Option<Discovered>>,
}

/// What discovery gave: the client, and the provider's end-session endpoint if it has one.
#[derive(Clone)]
struct Discovered {
    client: Client,
    end_session: Option<EndSessionUrl>,
}

/// A login that came back with a verified ID token.
pub struct Login {
    /// The person: the configured claim.
    pub person: String,
    /// The ID token itself (compact), kept for the logout at the provider.
    pub id_token: Zeroizing<String>,
}

/// Where to send the browser, and what to remember until it comes back.
pub struct Start {
    /// The provider's authorisation URL.
    pub url: String,
    /// The `state` parameter.
    pub state: Zeroizing<String>,
    /// The nonce.
    pub nonce: Zeroizing<String>,
    /// The PKCE verifier.
    pub pkce_verifier: Zeroizing<String>,
}

impl Oidc {
    /// A provider at `issuer` where this portal is `client_id` (with `secret` if confidential),
    /// coming back to `redirect`, the person being the ID token's claim `claim`.
    pub fn new(
        issuer: &str,
        client_id: &str,
        secret: Option<Zeroizing<String>>,
        redirect: &str,
        claim: &str,
    ) -> Result<Self, String> {
        let issuer = IssuerUrl::new(issuer.to_owned()).map_err(|e| format!("issuer: {e}"))?;
        let redirect =
            RedirectUrl::new(redirect.to_owned()).map_err(|e| format!("redirect URI: {e}"))?;
        // No redirects: a provider's endpoints answer directly (SSRF through a redirect is
        // not possible then).
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Oidc {
            issuer,
            client_id: ClientId::new(client_id.to_owned()),
            secret,
            redirect,
            claim: claim.to_owned(),
            http,
            client: Mutex::new(None),
        })
    }

    async fn discovered(&self) -> Result<Discovered, LoginError> {
        let mut slot = self.client.lock().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let metadata = ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| LoginError::Discovery(error_chain(&e)))?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let client = CoreClient::from_provider_metadata(
            metadata,
            self.client_id.clone(),
            self.secret
                .as_ref()
                .map(|s| ClientSecret::new(s.as_str().to_owned())),
        )
        .set_redirect_uri(self.redirect.clone());
        let d = Discovered {
            client,
            end_session,
        };
        *slot = Some(d.clone());
        Ok(d)
    }

    async fn client(&self) -> Result<Client, LoginError> {
        Ok(self.discovered().await?.client)
    }

    /// Where to send the browser to end its session at the provider too, coming back to
    /// `after` (registered at the provider as a post-logout redirect URI of this client), or
    /// `None` when the provider announces no end-session endpoint (or cannot be reached).
    pub async fn logout_url(&self, id_token: &str, after: &str) -> Option<String> {
        let d = self.discovered().await.ok()?;
        let mut url = d.end_session?.url().clone();
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", after)
            .append_pair("client_id", self.client_id.as_str());
        Some(url.to_string())
    }

    /// Begin a login: the provider's URL with a fresh state, nonce and PKCE challenge.
    pub async fn start(&self) -> Result<Start, LoginError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".to_owned()))
            .add_scope(Scope::new("email".to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Start {
            url: url.to_string(),
            state: Zeroizing::new(state.secret().clone()),
            nonce: Zeroizing::new(nonce.secret().clone()),
            pkce_verifier: Zeroizing::new(verifier.secret().clone()),
        })
    }

    /// Finish a login: exchange `code`, check the ID token, and return the configured claim.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Login, LoginError> {
        let client = self.client().await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| LoginError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::Exchange(error_chain(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| LoginError::IdToken("the provider sent no ID token".into()))?;
        let verifier = client.id_token_verifier();
        let nonce = Nonce::new(nonce.to_owned());
        id_token
            .claims(&verifier, &nonce)
            .map_err(|e| LoginError::IdToken(error_chain(&e)))?;
        // The claims were verified above; read the configured one from the same token.
        let compact = Zeroizing::new(id_token.to_string());
        Ok(Login {
            person: self.claim_of(&compact)?,
            id_token: compact,
        })
    }

    /// The configured claim of a compact JWS whose signature has been checked.
    fn claim_of(&self, compact: &str) -> Result<String, LoginError> {
        let bad = |why: &str| LoginError::Claim {
            claim: self.claim.clone(),
            why: why.to_owned(),
        };
        let payload = compact
            .split('.')
            .nth(1)
            .ok_or_else(|| bad("the ID token is not a compact JWS"))?;
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(payload.as_bytes())
            .map_err(|_| bad("the ID token's payload is not base64url"))?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| bad("the ID token's payload is not JSON"))?;
        let value = claims
            .get(&self.claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("absent from the ID token, or not a string"))?;
        okey_domain::org::PersonId::parse(value)
            .map(|id| id.as_str().to_owned())
            .map_err(|e| bad(&e.to_string()))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(claim: &str) -> Oidc {
        Oidc::new(
            "https://sso.example",
            "okey-portal",
            None,
            "http://127.0.0.1:8080/oidc/retour",
            claim,
        )
        .expect("settings")
    }

    fn token(payload: &str) -> String {
        let b = |s: &str| data_encoding::BASE64URL_NOPAD.encode(s.as_bytes());
        format!("{}.{}.c2ln", b(r#"{"alg":"RS256"}"#), b(payload))
    }

    #[test]
    fn the_person_is_the_configured_claim_checked_as_a_person_id() {
        let o = oidc("preferred_username");
        let t = token(r#"{"sub":"x1","preferred_username":"F.Head","email":"f@e.fr"}"#);
        assert_eq!(o.claim_of(&t).expect("claim"), "f.head", "folded");
        assert_eq!(oidc("sub").claim_of(&t).expect("claim"), "x1");
        for payload in [
            r#"{"sub":"x1"}"#,
            r#"{"preferred_username":7}"#,
            r#"{"preferred_username":"a b"}"#,
            r#"{"preferred_username":""}"#,
        ] {
            let err = o.claim_of(&token(payload)).expect_err(payload).to_string();
            assert!(err.contains("preferred_username"), "{err}");
        }
        assert!(o.claim_of("not-a-jws").is_err());
        assert!(o.claim_of("a.!!!.c").is_err());
    }

    #[test]
    fn settings_are_checked() {
        assert!(Oidc::new("not a url", "c", None, "http://x/cb", "sub").is_err());
        assert!(Oidc::new("https://sso.example", "c", None, "not a url", "sub").is_err());
    }
}

//! Connecting to a running okey: address and credential from flags or the environment.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use okey_server::proto::{
    audit_service_client::AuditServiceClient, auth_service_client::AuthServiceClient,
    caller_service_client::CallerServiceClient, directory_service_client::DirectoryServiceClient,
    lifecycle_service_client::LifecycleServiceClient, mail_service_client::MailServiceClient,
    request_service_client::RequestServiceClient, token_service_client::TokenServiceClient,
};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use zeroize::Zeroizing;

/// Where the server is and who we are.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Server address.
    #[arg(
        long,
        env = "OKEY_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// API key (prefer --api-key-file or the OKEY_API_KEY variable: flags show in `ps`).
    #[arg(long, env = "OKEY_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// File holding the API key (default: ./okey-data/admin.key when it exists).
    #[arg(long, env = "OKEY_API_KEY_FILE", global = true)]
    pub api_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS towards an `https://` server address.
#[derive(Debug, Args, Clone, Default)]
pub struct TlsArgs {
    /// PEM CA certificate(s) that signed the server's certificate (default: the public web
    /// roots built into okey).
    #[arg(long, env = "OKEY_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for a server that requires mutual TLS (with --client-key).
    #[arg(long, env = "OKEY_CLIENT_CERT", global = true, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "OKEY_CLIENT_KEY", global = true, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsArgs {
    fn any(&self) -> bool {
        self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

fn read_pem(path: &std::path::Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    Ok(Zeroizing::new(std::fs::read(path).with_context(|| {
        format!("cannot read {}", path.display())
    })?))
}

/// The endpoint for `server`: plain HTTP/2 for `http://`, TLS (and mutual TLS when a client
/// certificate is given) for `https://`.
pub fn endpoint(server: &str, tls: &TlsArgs) -> anyhow::Result<Endpoint> {
    let endpoint = Endpoint::from_shared(server.to_owned())
        .with_context(|| format!("{server} is not a server address"))?
        .tcp_nodelay(true);
    let https = endpoint.uri().scheme_str() == Some("https");
    if !https {
        if tls.any() {
            bail!("--ca-cert, --client-cert and --client-key need an https:// server address");
        }
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_cert {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read_pem(ca)?.as_slice())),
        None => config.with_webpki_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        config = config.identity(Identity::from_pem(
            read_pem(cert)?.as_slice(),
            read_pem(key)?.as_slice(),
        ));
    }
    endpoint
        .tls_config(config)
        .context("the TLS settings cannot be used")
}

/// Adds the bearer credential to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// Clients of every service over one connection.
pub struct Clients {
    pub auth: AuthServiceClient<Authed>,
    pub tokens: TokenServiceClient<Authed>,
    pub audit: AuditServiceClient<Authed>,
    pub callers: CallerServiceClient<Authed>,
    pub lifecycle: LifecycleServiceClient<Authed>,
    pub mail: MailServiceClient<Authed>,
    pub directory: DirectoryServiceClient<Authed>,
    pub requests: RequestServiceClient<Authed>,
    pub support: okey_server::proto::support_service_client::SupportServiceClient<Authed>,
}

impl ClientArgs {
    /// The API key: given, from its file, or from ./okey-data/admin.key when that exists.
    pub fn key(&self) -> anyhow::Result<Zeroizing<String>> {
        if let Some(k) = &self.api_key {
            return Ok(Zeroizing::new(k.trim().to_owned()));
        }
        let path = match &self.api_key_file {
            Some(p) => p.clone(),
            None => {
                let default = PathBuf::from("okey-data/admin.key");
                if !default.exists() {
                    bail!("no credential: give --api-key-file, OKEY_API_KEY_FILE or OKEY_API_KEY");
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Zeroizing::new(text.trim().to_owned()))
    }

    /// Connect and authenticate.
    pub async fn connect(&self) -> anyhow::Result<Clients> {
        let key = self.key()?;
        let value: MetadataValue<_> = format!("Bearer {}", key.as_str())
            .parse()
            .context("the API key has characters that cannot be sent")?;
        let channel = endpoint(&self.server, &self.tls)?
            .connect()
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot reach okey at {}: {}", self.server, error_chain(&e))
            })?;
        Ok(Clients::new(channel, Bearer(value)))
    }
}

/// An error and its causes on one line (a TLS refusal is only in the causes); a cause whose
/// text its parent already shows is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

impl Clients {
    pub fn new(channel: Channel, bearer: Bearer) -> Self {
        Clients {
            auth: AuthServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            tokens: TokenServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            audit: AuditServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            callers: CallerServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            lifecycle: LifecycleServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            mail: MailServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            directory: DirectoryServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            requests: RequestServiceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(okey_server::MAX_REQUEST_MESSAGE_BYTES),
            support:
                okey_server::proto::support_service_client::SupportServiceClient::with_interceptor(
                    channel.clone(),
                    bearer.clone(),
                ),
        }
    }
}

impl Bearer {
    pub fn new(key: &str) -> anyhow::Result<Self> {
        Ok(Bearer(format!("Bearer {key}").parse().context(
            "the API key has characters that cannot be sent",
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|l| l as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        let e = Layer(
            "transport error",
            Some(Box::new(Layer(
                "connection error: received fatal alert: UnknownCA",
                Some(Box::new(Layer("received fatal alert: UnknownCA", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "transport error: connection error: received fatal alert: UnknownCA"
        );
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }

    #[test]
    fn tls_files_need_an_https_address() {
        let tls = TlsArgs {
            ca_cert: Some("ca.pem".into()),
            ..TlsArgs::default()
        };
        let err = endpoint("http://127.0.0.1:50051", &tls).expect_err("refused");
        assert!(
            err.to_string().contains("need an https:// server address"),
            "{err}"
        );
        assert!(endpoint("http://127.0.0.1:50051", &TlsArgs::default()).is_ok());
        let missing = endpoint("https://127.0.0.1:50051", &tls).expect_err("no such file");
        assert!(
            format!("{missing:#}").contains("cannot read ca.pem"),
            "{missing:#}"
        );
    }
}

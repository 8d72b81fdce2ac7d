//! Connecting to a running okey: address and credential from flags or the environment.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use okey_server::proto::{
    audit_service_client::AuditServiceClient, auth_service_client::AuthServiceClient,
    caller_service_client::CallerServiceClient, token_service_client::TokenServiceClient,
};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
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
}

impl ClientArgs {
    fn key(&self) -> anyhow::Result<Zeroizing<String>> {
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
        let channel = Endpoint::from_shared(self.server.clone())
            .context("bad server address")?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("cannot reach okey at {}", self.server))?;
        Ok(Clients::new(channel, Bearer(value)))
    }
}

impl Clients {
    pub fn new(channel: Channel, bearer: Bearer) -> Self {
        Clients {
            auth: AuthServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            tokens: TokenServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            audit: AuditServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            callers: CallerServiceClient::with_interceptor(channel, bearer),
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

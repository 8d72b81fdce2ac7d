//! The `[radius]` section of the serve configuration, and its resolution into a checked client
//! table (secrets read from their files, which must be private).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::packet::{MAX_ATTRIBUTE_VALUE, attr};

/// Shortest shared secret accepted (RFC 2865 section 3 asks for at least 16 octets).
pub const MIN_SECRET_LEN: usize = 16;
/// Longest shared secret accepted.
pub const MAX_SECRET_LEN: usize = 256;

/// `[radius]`: where to listen, which clients may ask, what to answer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusConfig {
    /// UDP listen address.
    pub listen: SocketAddr,
    /// Seconds a reply is kept to answer a retransmission of its request (RFC 5080 2.2.2).
    pub duplicate_seconds: u64,
    /// Reply-Message texts.
    pub messages: Messages,
    /// The clients (NAS, VPN concentrators, proxies) allowed to send requests.
    pub client: Vec<ClientConfig>,
    /// Named groups of users, for reply attributes.
    pub groups: HashMap<String, Vec<String>>,
    /// Extra attributes on an Access-Accept, by user or group; the first matching rule wins.
    pub reply: Vec<ReplyRule>,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        RadiusConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1812)),
            duplicate_seconds: 10,
            messages: Messages::default(),
            client: Vec::new(),
            groups: HashMap::new(),
            reply: Vec::new(),
        }
    }
}

/// Reply-Message texts (empty: no Reply-Message). The reject reason is never sent: it stays
/// in okey's log and audit.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Messages {
    /// On Access-Accept.
    pub accept: String,
    /// On Access-Reject.
    pub reject: String,
    /// On Access-Challenge; `{challenge}` is replaced by the challenge to key in.
    pub challenge: String,
}

impl Default for Messages {
    fn default() -> Self {
        Messages {
            accept: String::new(),
            reject: "Authentication failed".to_owned(),
            challenge: "Challenge {challenge}: enter the response shown by your key".to_owned(),
        }
    }
}

/// `[[radius.client]]`: one client or network of clients.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Name, as recorded in audit entries and metrics.
    pub name: String,
    /// An address (`192.0.2.7`) or a network (`192.0.2.0/24`, `2001:db8::/32`).
    pub address: String,
    /// File holding the shared secret (at least 16 characters; mode 0600 or stricter).
    pub secret_file: PathBuf,
    /// Whether an Access-Request must carry a valid Message-Authenticator (default true:
    /// the BlastRADIUS mitigation). Turning it off for old equipment is logged at every start.
    #[serde(default = "yes")]
    pub require_message_authenticator: bool,
}

fn yes() -> bool {
    true
}

/// `[[radius.reply]]`: attributes added to an Access-Accept for a user or a group.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplyRule {
    /// The user this rule is for.
    pub user: Option<String>,
    /// The group (of `[radius.groups]`) this rule is for.
    pub group: Option<String>,
    /// Class (25).
    pub class: Option<String>,
    /// Filter-Id (11).
    pub filter_id: Option<String>,
    /// Session-Timeout (27), seconds.
    pub session_timeout: Option<u32>,
    /// Idle-Timeout (28), seconds.
    pub idle_timeout: Option<u32>,
}

/// A `[radius]` section that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RadiusConfigError {
    /// A value out of range or inconsistent.
    #[error("radius: {0}")]
    Invalid(String),
    /// A secret file that cannot be used.
    #[error("radius client {client}: secret file {path}: {why}")]
    Secret {
        /// The client.
        client: String,
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// An address or network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parse `addr` or `addr/prefix`.
    pub fn parse(s: &str) -> Result<Network, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let base: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let net = Network { base, prefix };
        if net.masked(base) != base {
            return Err(format!(
                "{s:?} has host bits set: write the network address"
            ));
        }
        Ok(net)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v) => {
                let bits = u32::from(v);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v) => {
                let bits = u128::from(v);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.base.is_ipv4() && self.masked(ip) == self.base
    }

    /// The prefix length (longer is more specific).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// A configured client with its secret.
pub struct Client {
    /// Name (audit, metrics, logs).
    pub name: String,
    /// Where it may send from.
    pub network: Network,
    /// Whether requests must carry a valid Message-Authenticator.
    pub require_message_authenticator: bool,
    /// Whether a request without a Message-Authenticator was already logged.
    pub(crate) warned: std::sync::atomic::AtomicBool,
    secret: Zeroizing<Vec<u8>>,
}

impl Client {
    /// A client from its parts (the secret is checked for length).
    pub fn new(
        name: &str,
        network: Network,
        secret: Zeroizing<Vec<u8>>,
        require_message_authenticator: bool,
    ) -> Result<Client, RadiusConfigError> {
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
            return Err(RadiusConfigError::Invalid(format!(
                "client {name}: a shared secret has {MIN_SECRET_LEN} to {MAX_SECRET_LEN} characters"
            )));
        }
        Ok(Client {
            name: name.to_owned(),
            network,
            require_message_authenticator,
            warned: std::sync::atomic::AtomicBool::new(false),
            secret,
        })
    }

    /// The shared secret.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("network", &self.network)
            .field(
                "require_message_authenticator",
                &self.require_message_authenticator,
            )
            .field("secret", &"<secret>")
            .finish()
    }
}

/// The clients, most specific network first.
#[derive(Debug, Default)]
pub struct Clients {
    clients: Vec<std::sync::Arc<Client>>,
}

impl Clients {
    /// A table of `clients`.
    pub fn new(mut clients: Vec<Client>) -> Self {
        clients.sort_by_key(|c| std::cmp::Reverse(c.network.prefix()));
        Clients {
            clients: clients.into_iter().map(std::sync::Arc::new).collect(),
        }
    }

    /// The client `ip` belongs to, if any.
    pub fn find(&self, ip: IpAddr) -> Option<&std::sync::Arc<Client>> {
        self.clients.iter().find(|c| c.network.contains(ip))
    }

    /// All of them, most specific first.
    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.clients.iter().map(|c| c.as_ref())
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// Attributes to add to an Access-Accept, already encoded.
pub type ReplyAttributes = Vec<(u8, Vec<u8>)>;

/// A checked `[radius]` section: clients with their secrets, texts, reply attributes.
#[derive(Debug)]
pub struct Resolved {
    /// Listen address.
    pub listen: SocketAddr,
    /// Seconds a reply answers retransmissions.
    pub duplicate_seconds: u64,
    /// Texts.
    pub messages: Messages,
    /// Clients.
    pub clients: Clients,
    rules: Vec<(Matcher, ReplyAttributes)>,
    groups: HashMap<String, Vec<String>>,
}

#[derive(Debug)]
enum Matcher {
    User(String),
    Group(String),
}

impl Resolved {
    /// The attributes an Access-Accept for `user` carries.
    pub fn reply_attributes(&self, user: &str) -> &[(u8, Vec<u8>)] {
        self.rules
            .iter()
            .find(|(m, _)| match m {
                Matcher::User(u) => u == user,
                Matcher::Group(g) => self
                    .groups
                    .get(g)
                    .is_some_and(|members| members.iter().any(|m| m == user)),
            })
            .map_or(&[], |(_, a)| a.as_slice())
    }
}

impl RadiusConfig {
    /// Check ranges and names (no file is read).
    pub fn validate(&self) -> Result<(), RadiusConfigError> {
        let bad = |s: String| Err(RadiusConfigError::Invalid(s));
        if self.duplicate_seconds == 0 || self.duplicate_seconds > 300 {
            return bad("duplicate_seconds must be 1 to 300".into());
        }
        for (what, text) in [
            ("accept", &self.messages.accept),
            ("reject", &self.messages.reject),
            ("challenge", &self.messages.challenge),
        ] {
            // A challenge of up to 64 characters replaces the placeholder.
            if text.len() + 64 > MAX_ATTRIBUTE_VALUE || text.chars().any(char::is_control) {
                return bad(format!(
                    "messages.{what} has at most 189 printable characters"
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.client {
            if c.name.is_empty()
                || c.name.len() > 64
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            {
                return bad(format!(
                    "client name {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
                    c.name
                ));
            }
            if !names.insert(c.name.as_str()) {
                return bad(format!("client name {:?} is used twice", c.name));
            }
            Network::parse(&c.address)
                .map_err(|e| RadiusConfigError::Invalid(format!("client {}: {e}", c.name)))?;
        }
        for (i, r) in self.reply.iter().enumerate() {
            match (&r.user, &r.group) {
                (Some(_), None) => {}
                (None, Some(g)) if self.groups.contains_key(g) => {}
                (None, Some(g)) => {
                    return bad(format!(
                        "reply rule {}: group {g:?} is not in [radius.groups]",
                        i + 1
                    ));
                }
                _ => {
                    return bad(format!(
                        "reply rule {}: give exactly one of user or group",
                        i + 1
                    ));
                }
            }
            for v in [&r.class, &r.filter_id].into_iter().flatten() {
                if v.is_empty() || v.len() > MAX_ATTRIBUTE_VALUE {
                    return bad(format!(
                        "reply rule {}: class and filter_id have 1 to 253 octets",
                        i + 1
                    ));
                }
            }
        }
        Ok(())
    }

    /// Validate, read the secret files, and build the client table.
    pub fn resolve(&self) -> Result<Resolved, RadiusConfigError> {
        self.validate()?;
        let mut clients = Vec::with_capacity(self.client.len());
        for c in &self.client {
            let network = Network::parse(&c.address)
                .map_err(|e| RadiusConfigError::Invalid(format!("client {}: {e}", c.name)))?;
            let secret = read_secret(&c.secret_file).map_err(|why| RadiusConfigError::Secret {
                client: c.name.clone(),
                path: c.secret_file.clone(),
                why,
            })?;
            clients.push(Client::new(
                &c.name,
                network,
                secret,
                c.require_message_authenticator,
            )?);
        }
        let rules = self
            .reply
            .iter()
            .map(|r| {
                let matcher = match (&r.user, &r.group) {
                    (Some(u), _) => Matcher::User(u.clone()),
                    (None, Some(g)) => Matcher::Group(g.clone()),
                    (None, None) => Matcher::User(String::new()),
                };
                let mut attrs = Vec::new();
                if let Some(v) = &r.class {
                    attrs.push((attr::CLASS, v.as_bytes().to_vec()));
                }
                if let Some(v) = &r.filter_id {
                    attrs.push((attr::FILTER_ID, v.as_bytes().to_vec()));
                }
                if let Some(v) = r.session_timeout {
                    attrs.push((attr::SESSION_TIMEOUT, v.to_be_bytes().to_vec()));
                }
                if let Some(v) = r.idle_timeout {
                    attrs.push((attr::IDLE_TIMEOUT, v.to_be_bytes().to_vec()));
                }
                (matcher, attrs)
            })
            .collect();
        Ok(Resolved {
            listen: self.listen,
            duplicate_seconds: self.duplicate_seconds,
            messages: self.messages.clone(),
            clients: Clients::new(clients),
            rules,
            groups: self.groups.clone(),
        })
    }
}

/// Read a shared secret: the file must be a regular file that neither group nor others may
/// read or write; the secret is its first line, without the line end.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("mode {mode:04o} lets others read it: chmod 600 it"));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| e.to_string())?);
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let secret = Zeroizing::new(line.to_vec());
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "the secret has {} characters; at least {MIN_SECRET_LEN} are required",
            secret.len()
        ));
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(format!(
            "the secret has more than {MAX_SECRET_LEN} characters"
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn networks() {
        let check = |net: &str, ip: &str, inside: bool| {
            let n = Network::parse(net).expect(net);
            assert_eq!(n.contains(ip.parse().expect(ip)), inside, "{ip} in {net}");
        };
        check("192.0.2.7", "192.0.2.7", true);
        check("192.0.2.7", "192.0.2.8", false);
        check("192.0.2.0/24", "192.0.2.255", true);
        check("192.0.2.0/24", "192.0.3.0", false);
        check("0.0.0.0/0", "203.0.113.9", true);
        check("0.0.0.0/0", "::1", false);
        check("127.0.0.1", "::ffff:127.0.0.1", true);
        check("2001:db8::/32", "2001:db8:ffff::1", true);
        check("2001:db8::/32", "2001:db9::1", false);
        check("::1", "::1", true);
        for bad in [
            "192.0.2.1/24",
            "192.0.2.0/33",
            "::/129",
            "nope",
            "10.0.0.0/x",
            "",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_most_specific_client_wins() {
        let s = || Zeroizing::new(b"0123456789abcdef".to_vec());
        let wide = Client::new("lan", Network::parse("10.0.0.0/8").expect("n"), s(), true);
        let one = Client::new("vpn", Network::parse("10.1.2.3").expect("n"), s(), true);
        let t = Clients::new(vec![wide.expect("c"), one.expect("c")]);
        let name = |ip: &str| t.find(ip.parse().expect("ip")).map(|c| c.name.clone());
        assert_eq!(name("10.1.2.3").as_deref(), Some("vpn"));
        assert_eq!(name("10.1.2.4").as_deref(), Some("lan"));
        assert_eq!(name("11.0.0.1"), None);
    }

    #[test]
    fn secrets_must_be_private_and_long() {
        let dir = tempfile::tempdir().expect("dir");
        let good = secret_file(dir.path(), "good", "0123456789abcdef\n", 0o600);
        assert_eq!(
            read_secret(&good).expect("good").as_slice(),
            b"0123456789abcdef"
        );
        let open = secret_file(dir.path(), "open", "0123456789abcdef\n", 0o644);
        assert!(read_secret(&open).expect_err("0644").contains("chmod 600"));
        let group = secret_file(dir.path(), "group", "0123456789abcdef\n", 0o620);
        assert!(read_secret(&group).is_err());
        let short = secret_file(dir.path(), "short", "0123456789abcde\n", 0o600);
        assert!(read_secret(&short).expect_err("15").contains("at least 16"));
        assert!(read_secret(&dir.path().join("missing")).is_err());
        assert!(read_secret(dir.path()).is_err());
    }

    #[test]
    fn sections_parse_check_and_resolve() {
        let dir = tempfile::tempdir().expect("dir");
        let f = secret_file(dir.path(), "s", "0123456789abcdef", 0o600);
        let text = format!(
            r#"
listen = "127.0.0.1:11812"
[messages]
reject = "Non"
[groups]
staff = ["alice"]
[[client]]
name = "vpn-1"
address = "127.0.0.0/8"
secret_file = "{f}"
[[client]]
name = "old-nas"
address = "192.0.2.1"
secret_file = "{f}"
require_message_authenticator = false
[[reply]]
user = "bob"
filter_id = "bob-only"
[[reply]]
group = "staff"
class = "staff"
session_timeout = 3600
"#,
            f = f.display()
        );
        let c: RadiusConfig = toml::from_str(&text).expect("parse");
        let r = c.resolve().expect("resolve");
        assert_eq!(r.listen.port(), 11812);
        assert_eq!(r.messages.reject, "Non");
        assert_eq!(r.clients.len(), 2);
        let old = r
            .clients
            .find("192.0.2.1".parse().expect("ip"))
            .expect("old");
        assert!(!old.require_message_authenticator);
        assert!(format!("{old:?}").contains("<secret>"));
        assert!(!format!("{old:?}").contains("0123456789abcdef"));
        assert_eq!(
            r.reply_attributes("alice"),
            [
                (attr::CLASS, b"staff".to_vec()),
                (attr::SESSION_TIMEOUT, 3600u32.to_be_bytes().to_vec())
            ]
        );
        assert_eq!(
            r.reply_attributes("bob"),
            [(attr::FILTER_ID, b"bob-only".to_vec())]
        );
        assert!(r.reply_attributes("carol").is_empty());

        for (bad, why) in [
            (
                "[[client]]\nname = \"a\"\naddress = \"1.2.3.4\"\nsecret_file = \"/x\"\nsecret = \"y\"\n",
                "secret",
            ),
            ("duplicate_seconds = 0", ""),
            (
                "[[client]]\nname = \"a b\"\naddress = \"1.2.3.4\"\nsecret_file = \"/x\"\n",
                "client name",
            ),
            (
                "[[client]]\nname = \"a\"\naddress = \"1.2.3.4/8\"\nsecret_file = \"/x\"\n",
                "host bits",
            ),
            ("[[reply]]\ngroup = \"nobody\"\nclass = \"x\"\n", "not in"),
            ("[[reply]]\nclass = \"x\"\n", "exactly one"),
        ] {
            let err = toml::from_str::<RadiusConfig>(bad)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
                .expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        // Two clients of one name.
        let twice = format!(
            "[[client]]\nname = \"a\"\naddress = \"1.2.3.4\"\nsecret_file = \"{f}\"\n[[client]]\nname = \"a\"\naddress = \"1.2.3.5\"\nsecret_file = \"{f}\"\n",
            f = f.display()
        );
        let c: RadiusConfig = toml::from_str(&twice).expect("parse");
        assert!(c.resolve().is_err());
    }
}

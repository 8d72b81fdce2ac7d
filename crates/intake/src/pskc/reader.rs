//! The streaming PSKC reader: one key package at a time, memory bounded by the limits.
//!
//! The reader keeps a stack of element names (bounded by `max_depth`), the container
//! header (encryption key, MAC key) and the one key package being read; it never builds a
//! tree of the document. What a text node means is decided by its path, matched on local
//! names (the root's namespace is checked; the RFC's examples mix prefixed and unprefixed
//! children, so prefixes below the root carry no meaning here).

use std::collections::HashMap;
use std::io::{BufReader, Read};

use data_encoding::BASE64;
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use zeroize::{Zeroize, Zeroizing};

use super::{KeyMaterial, Limits, MacPolicy, PSKC_NS, PskcOptions};
use crate::crypto::{self, Cipher, DecryptError, MacAlgorithm, Prf};
use crate::error::{
    FileError, ImportError, PackageError, PackageErrorKind, PackageRef, Position, quote,
};
use crate::guard::Guard;
use crate::model::{
    Algorithm, Encoding, HashAlgorithm, Ignored, KeyPackage, PinPolicy, PinUsageMode,
    ResponseFormat, parse_datetime,
};

/// Progress of a read, reported to the hook given to [`PskcReader::on_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Key packages read so far (accepted or refused).
    pub packages: usize,
    /// Bytes of input read so far.
    pub bytes: u64,
    /// True on the last report, after the end of the container.
    pub done: bool,
}

type Hook<'a> = Box<dyn FnMut(Progress) + Send + 'a>;

/// Streaming reader of a PSKC key container.
///
/// Iterating yields each key package, or the reason it was refused; a
/// [`ImportError::File`] item ends the iteration (the whole file is refused). Callers that
/// import all or nothing must stop at the first error of either kind (see
/// [`crate::collect_all`]); callers that import partially keep the packages and report
/// the [`ImportError::Package`] items (see [`crate::collect_partial`]).
pub struct PskcReader<'a, R: Read> {
    xml: NsReader<BufReader<Guard<R>>>,
    buf: Vec<u8>,
    stack: Vec<Tag>,
    text: Zeroizing<String>,
    capture: Option<Cap>,
    key: KeyMaterial,
    limits: Limits,
    mac_policy: MacPolicy,
    header: Header,
    keys: Option<Keys>,
    pkg: Option<Pkg>,
    count: usize,
    /// Serials seen, with the position of their package: the one structure that grows
    /// with the file (a few dozen bytes a package), needed to refuse duplicates.
    serials: HashMap<Box<str>, usize>,
    container_id: Option<String>,
    hook: Option<(usize, Hook<'a>)>,
    finished: bool,
    root_closed: bool,
    /// A `ds:Signature` element was seen (it is not checked).
    signature_seen: bool,
    /// Some package held an encrypted value.
    encrypted_seen: bool,
}

impl<R: Read> std::fmt::Debug for PskcReader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskcReader")
            .field("packages", &self.count)
            .field("bytes", &self.bytes_read())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<'a, R: Read> PskcReader<'a, R> {
    /// A reader over `input` (a file, a byte slice, any `Read`); buffering is internal.
    pub fn new(input: R, options: PskcOptions) -> Self {
        let limits = options.limits;
        let guard = Guard::new(input, limits.max_text_len);
        let mut xml = NsReader::from_reader(BufReader::with_capacity(8 * 1024, guard));
        let config = xml.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        Self {
            xml,
            buf: Vec::new(),
            stack: Vec::new(),
            text: Zeroizing::new(String::new()),
            capture: None,
            key: options.key,
            limits,
            mac_policy: options.mac_policy,
            header: Header::default(),
            keys: None,
            pkg: None,
            count: 0,
            serials: HashMap::new(),
            container_id: None,
            hook: None,
            finished: false,
            root_closed: false,
            signature_seen: false,
            encrypted_seen: false,
        }
    }

    /// Calls `hook` every `every` key packages and once at the end.
    #[must_use]
    pub fn on_progress(mut self, every: usize, hook: impl FnMut(Progress) + Send + 'a) -> Self {
        self.hook = Some((every.max(1), Box::new(hook)));
        self
    }

    /// Bytes of input read so far.
    pub fn bytes_read(&self) -> u64 {
        self.xml.get_ref().get_ref().total()
    }

    /// Key packages seen so far.
    pub fn packages_read(&self) -> usize {
        self.count
    }

    /// What the file carried that this reader did not act on, as far as read: an XML signature
    /// (never checked), a password or pre-shared key given for a file that encrypts nothing.
    /// Complete once the iteration has ended.
    pub fn ignored(&self) -> Vec<Ignored> {
        let mut out = Vec::new();
        if self.signature_seen {
            out.push(Ignored::Signature);
        }
        let h = &self.header;
        let encrypts = h.derived || h.key_name.is_some() || h.mac_method || self.encrypted_seen;
        if !encrypts && !matches!(self.key, KeyMaterial::None) {
            out.push(Ignored::UnusedKey(self.key.kind()));
        }
        out
    }

    /// The container's `Id` attribute, once the root element has been read.
    pub fn container_id(&self) -> Option<&str> {
        self.container_id.as_deref()
    }

    fn report(&mut self, done: bool) {
        let bytes = self.bytes_read();
        let packages = self.count;
        if let Some((every, hook)) = &mut self.hook
            && (done || packages.is_multiple_of(*every))
        {
            hook(Progress {
                packages,
                bytes,
                done,
            });
        }
    }

    fn xml_error(&self, e: &quick_xml::Error) -> FileError {
        if self.xml.get_ref().get_ref().tripped() {
            return FileError::TooLong(self.limits.max_text_len);
        }
        match e {
            quick_xml::Error::Io(io) => {
                FileError::Io(std::io::Error::new(io.kind(), io.to_string()))
            }
            other => FileError::Xml {
                position: self.xml.buffer_position(),
                message: other.to_string(),
            },
        }
    }

    /// Reads events until a package is complete, the file ends, or the file is refused.
    fn step(&mut self) -> Option<Result<KeyPackage, ImportError>> {
        loop {
            // The buffer is taken out while its event is handled, so the event can
            // borrow it without a copy; it goes back (wiped if it held seed text) below.
            let mut buf = std::mem::take(&mut self.buf);
            let event = match self.xml.read_event_into(&mut buf) {
                Ok(ev) => ev,
                Err(e) => {
                    self.buf = buf;
                    return Some(Err(self.xml_error(&e).into()));
                }
            };
            let capturing = self.capture.is_some();
            let outcome = match event {
                Event::Start(e) => self.start(&e, false),
                Event::Empty(e) => self.start(&e, true),
                Event::End(_) => self.end(),
                Event::Text(t) => {
                    if self.capture.is_some() {
                        let content = Zeroizing::new(t.xml10_content().into_owned());
                        self.push_text(&content)
                    } else {
                        Ok(None)
                    }
                }
                Event::CData(t) => {
                    if self.capture.is_some() {
                        let content = Zeroizing::new(t.xml10_content().into_owned());
                        self.push_text(&content)
                    } else {
                        Ok(None)
                    }
                }
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c),
                        Ok(None) => match &*r.into_inner() {
                            "lt" => Some('<'),
                            "gt" => Some('>'),
                            "amp" => Some('&'),
                            "apos" => Some('\''),
                            "quot" => Some('"'),
                            other => {
                                return Some(Err(FileError::UndeclaredEntity(
                                    other.chars().take(64).collect(),
                                )
                                .into()));
                            }
                        },
                        Err(e) => return Some(Err(self.xml_error(&e).into())),
                    };
                    match resolved {
                        Some(c) if self.capture.is_some() => {
                            self.push_text(c.encode_utf8(&mut [0; 4]))
                        }
                        _ => Ok(None),
                    }
                }
                Event::DocType(_) => Err(ImportError::File(FileError::DocType)),
                Event::Decl(d) => match d.encoding() {
                    Some(Ok(enc))
                        if !matches!(
                            enc.to_ascii_uppercase().as_str(),
                            "UTF-8" | "UTF8" | "US-ASCII" | "ASCII"
                        ) =>
                    {
                        Err(ImportError::File(FileError::Encoding(
                            enc.chars().take(32).collect(),
                        )))
                    }
                    Some(Err(e)) => Err(ImportError::File(FileError::Xml {
                        position: self.xml.buffer_position(),
                        message: e.to_string(),
                    })),
                    _ => Ok(None),
                },
                Event::Comment(_) | Event::PI(_) => Ok(None),
                Event::Eof => {
                    return if self.root_closed {
                        None
                    } else if self.stack.is_empty() && self.count == 0 {
                        Some(Err(
                            FileError::NotPskc("no KeyContainer element".into()).into()
                        ))
                    } else {
                        Some(Err(FileError::Xml {
                            position: self.xml.buffer_position(),
                            message: "the file ends inside an element (truncated?)".into(),
                        }
                        .into()))
                    };
                }
            };
            if capturing || self.capture.is_some() {
                buf.zeroize();
            } else {
                buf.clear();
            }
            self.buf = buf;
            match outcome {
                Ok(None) => {}
                Ok(Some(pkg)) => return Some(pkg),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// XML 1.0 allows no control character but tab, line feed and carriage return, not
    /// even as a character reference; a value holding one is refused.
    fn check_chars(&self, s: &str) -> Result<(), ImportError> {
        match s
            .chars()
            .find(|c| u32::from(*c) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
        {
            None => Ok(()),
            Some(c) => Err(FileError::Xml {
                position: self.xml.buffer_position(),
                message: format!("character U+{:04X} is not allowed in XML", u32::from(c)),
            }
            .into()),
        }
    }

    fn push_text(
        &mut self,
        s: &str,
    ) -> Result<Option<Result<KeyPackage, ImportError>>, ImportError> {
        if self.text.len() + s.len() > self.limits.max_text_len {
            return Err(FileError::TooLong(self.limits.max_text_len).into());
        }
        self.check_chars(s)?;
        self.text.push_str(s);
        Ok(None)
    }

    fn start(
        &mut self,
        e: &BytesStart<'_>,
        empty: bool,
    ) -> Result<Option<Result<KeyPackage, ImportError>>, ImportError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(FileError::TooDeep(self.limits.max_depth).into());
        }
        if self.root_closed {
            return Err(FileError::Xml {
                position: self.xml.buffer_position(),
                message: "content after the KeyContainer element".into(),
            }
            .into());
        }
        let tag = Tag::from_local(e.local_name().as_ref());
        if tag == Tag::Signature {
            self.signature_seen = true;
        }
        let attrs = self.attributes(e, tag)?;
        if self.stack.is_empty() {
            self.open_root(e, tag, &attrs)?;
        }
        self.stack.push(tag);
        self.on_open(&attrs)?;
        self.capture = capture_for(&self.stack);
        self.text.zeroize();
        if empty { self.end() } else { Ok(None) }
    }

    /// Counts the attributes (refusing too many) and collects those of elements read.
    fn attributes(
        &self,
        e: &BytesStart<'_>,
        tag: Tag,
    ) -> Result<Vec<(String, String)>, ImportError> {
        let mut out = Vec::new();
        let wanted = tag.has_wanted_attributes();
        for (n, attr) in e.attributes().enumerate() {
            if n >= self.limits.max_attributes {
                return Err(FileError::TooManyAttributes(self.limits.max_attributes).into());
            }
            let attr = attr.map_err(|err| FileError::Xml {
                position: self.xml.buffer_position(),
                message: err.to_string(),
            })?;
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|err| {
                    let message = err.to_string();
                    if message.contains("entity") || message.contains("Entity") {
                        FileError::UndeclaredEntity(attr.value.chars().take(64).collect())
                    } else {
                        FileError::Xml {
                            position: self.xml.buffer_position(),
                            message,
                        }
                    }
                })?;
            if wanted {
                self.check_chars(&value)?;
                let key = attr.key.local_name().as_ref().to_owned();
                out.push((key, value.into_owned()));
            }
        }
        Ok(out)
    }

    fn open_root(
        &mut self,
        e: &BytesStart<'_>,
        tag: Tag,
        attrs: &[(String, String)],
    ) -> Result<(), ImportError> {
        let (ns, _) = self.xml.resolver().resolve_element(e.name());
        let ns_ok = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == PSKC_NS);
        if tag != Tag::KeyContainer || !ns_ok {
            let found = e.name().as_ref().chars().take(64).collect::<String>();
            let ns = match ns {
                ResolveResult::Bound(n) => n.as_ref().chars().take(80).collect(),
                _ => "no namespace".to_owned(),
            };
            return Err(FileError::NotPskc(format!("root element {found:?} in {ns:?}")).into());
        }
        match attr(attrs, "Version") {
            Some("1.0") => {}
            Some(v) => return Err(FileError::Version(v.chars().take(16).collect()).into()),
            None => return Err(FileError::Version(String::new()).into()),
        }
        self.container_id = attr(attrs, "Id").map(str::to_owned);
        Ok(())
    }

    /// Attribute handling and structure checks when an element opens (already pushed).
    fn on_open(&mut self, attrs: &[(String, String)]) -> Result<(), ImportError> {
        use Tag as T;
        match self.stack.as_slice() {
            [
                T::KeyContainer,
                T::EncryptionKey,
                T::DerivedKey,
                T::KeyDerivationMethod,
            ] => {
                self.header.kdf_uri = attr(attrs, "Algorithm").map(str::to_owned);
            }
            [
                T::KeyContainer,
                T::EncryptionKey,
                T::DerivedKey,
                T::KeyDerivationMethod,
                T::Pbkdf2Params,
                T::Prf,
            ] => {
                self.header.prf_uri = attr(attrs, "Algorithm").map(str::to_owned);
            }
            [T::KeyContainer, T::EncryptionKey, T::DerivedKey] => self.header.derived = true,
            [T::KeyContainer, T::EncryptionKey, other]
                if !matches!(other, T::KeyName | T::DerivedKey) =>
            {
                return Err(FileError::Unsupported(
                    "encryption key other than a pre-shared key name or a PBKDF2-derived key (e.g. X.509)".into(),
                )
                .into());
            }
            [T::KeyContainer, T::MacMethod] => {
                self.header.mac_method = true;
                self.header.mac_uri = attr(attrs, "Algorithm").map(str::to_owned);
            }
            [
                T::KeyContainer,
                T::MacMethod,
                T::MacKey,
                T::EncryptionMethod,
            ] => {
                self.header.mac_key_cipher_uri = attr(attrs, "Algorithm").map(str::to_owned);
            }
            [T::KeyContainer, T::KeyPackage] => {
                if self.count >= self.limits.max_packages {
                    return Err(FileError::TooManyPackages(self.limits.max_packages).into());
                }
                if self.keys.is_none() {
                    self.keys = Some(self.resolve_keys()?);
                }
                self.count += 1;
                self.pkg = Some(Pkg::new(self.count));
            }
            [T::KeyContainer, T::KeyPackage, T::Key] => {
                if let Some(p) = &mut self.pkg {
                    p.keys_seen += 1;
                    if p.keys_seen > 1 {
                        p.fail(PackageErrorKind::MultipleKeys);
                    }
                    p.key_id = attr(attrs, "Id").map(str::to_owned);
                    p.algorithm_uri = attr(attrs, "Algorithm").map(str::to_owned);
                }
            }
            [
                T::KeyContainer,
                T::KeyPackage,
                T::Key,
                T::AlgorithmParameters,
                T::ResponseFormat,
            ] => {
                if let Some(p) = &mut self.pkg {
                    p.response = Some(response_format(attrs));
                }
            }
            [
                T::KeyContainer,
                T::KeyPackage,
                T::Key,
                T::Data,
                d,
                T::EncryptedValue,
                T::EncryptionMethod,
            ] => {
                if let (Some(p), Some(kind)) = (&mut self.pkg, DataKind::of(*d)) {
                    p.data_mut(kind).cipher_uri = attr(attrs, "Algorithm").map(str::to_owned);
                }
            }
            [
                T::KeyContainer,
                T::KeyPackage,
                T::Key,
                T::Policy,
                T::PinPolicy,
            ] => {
                if let Some(p) = &mut self.pkg {
                    match pin_policy(attrs) {
                        Ok(pp) => p.pin_policy = Some(pp),
                        Err(kind) => p.fail(kind),
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self) -> Result<Option<Result<KeyPackage, ImportError>>, ImportError> {
        let path_cap = self.capture.take();
        if let Some(cap) = path_cap {
            let text = std::mem::take(&mut self.text);
            self.apply_text(cap, text);
        }
        let closing = match self.stack.as_slice() {
            [Tag::KeyContainer, Tag::KeyPackage] => Closing::Package,
            [Tag::KeyContainer] => Closing::Container,
            _ => Closing::Other,
        };
        self.stack.pop();
        // A parent element's capture is never text-bearing once children are seen.
        self.capture = None;
        match closing {
            Closing::Package => {
                let Some(pkg) = self.pkg.take() else {
                    return Ok(None);
                };
                let result = self.finish_package(pkg);
                self.report(false);
                match result {
                    Ok(p) => Ok(Some(Ok(p))),
                    Err(Finish::Package(e)) => Ok(Some(Err(ImportError::Package(e)))),
                    Err(Finish::File(e)) => Err(ImportError::File(e)),
                }
            }
            Closing::Container => {
                if self.keys.is_none() {
                    self.keys = Some(self.resolve_keys()?);
                }
                self.root_closed = true;
                self.report(true);
                Ok(None)
            }
            Closing::Other => Ok(None),
        }
    }

    fn apply_text(&mut self, cap: Cap, text: Zeroizing<String>) {
        let plain = || text.trim().to_owned();
        match cap {
            Cap::KeyName => self.header.key_name = Some(plain()),
            Cap::Salt => self.header.salt = Some(plain()),
            Cap::IterationCount => self.header.iterations = Some(plain()),
            Cap::KeyLength => self.header.key_length = Some(plain()),
            Cap::MacKeyValue => self.header.mac_key_value = Some(plain()),
            Cap::Pkg(field) => {
                let Some(p) = &mut self.pkg else { return };
                match field {
                    PkgField::Manufacturer => p.manufacturer = Some(plain()),
                    PkgField::SerialNo => p.serial = Some(plain()),
                    PkgField::Model => p.model = Some(plain()),
                    PkgField::DeviceStart => p.device_start = Some(plain()),
                    PkgField::DeviceExpiry => p.device_expiry = Some(plain()),
                    PkgField::Issuer => p.issuer = Some(plain()),
                    PkgField::Suite => p.suite = Some(plain()),
                    PkgField::PolicyStart => p.policy_start = Some(plain()),
                    PkgField::PolicyExpiry => p.policy_expiry = Some(plain()),
                    PkgField::DeviceUserId => p.device_user_id = Some(plain()),
                    PkgField::KeyUserId => p.key_user_id = Some(plain()),
                    PkgField::Data(kind, part) => {
                        let d = p.data_mut(kind);
                        match part {
                            DataPart::Plain => d.plain = Some(text),
                            DataPart::CipherValue => d.cipher_value = Some(text),
                            DataPart::Mac => d.mac = Some(plain()),
                        }
                    }
                }
            }
        }
    }

    /// Works out the encryption and MAC keys once the header is read.
    fn resolve_keys(&self) -> Result<Keys, ImportError> {
        let h = &self.header;
        let enc_key: Option<Zeroizing<Vec<u8>>> = if h.derived {
            let KeyMaterial::Password(password) = &self.key else {
                return Err(match self.key {
                    KeyMaterial::None => FileError::KeyRequired,
                    _ => FileError::WrongKeyKind {
                        expected: "a password",
                        given: self.key.kind(),
                    },
                }
                .into());
            };
            Some(self.derive(password)?)
        } else if h.key_name.is_some() {
            match &self.key {
                KeyMaterial::PreSharedKey(k) => Some(k.clone()),
                KeyMaterial::None => return Err(FileError::KeyRequired.into()),
                KeyMaterial::Password(_) => {
                    return Err(FileError::WrongKeyKind {
                        expected: "a pre-shared key",
                        given: "a password",
                    }
                    .into());
                }
            }
        } else {
            match &self.key {
                KeyMaterial::PreSharedKey(k) => Some(k.clone()),
                _ => None,
            }
        };
        let mac = if h.mac_method {
            let uri = h.mac_uri.as_deref().unwrap_or_default();
            let alg = MacAlgorithm::from_uri(uri).ok_or_else(|| {
                FileError::MacMethod(format!("unsupported algorithm {}", quote(uri)))
            })?;
            let cipher_uri = h.mac_key_cipher_uri.as_deref().unwrap_or_default();
            let cipher = Cipher::from_uri(cipher_uri).ok_or_else(|| {
                FileError::MacMethod(format!(
                    "unsupported MAC key encryption {}",
                    quote(cipher_uri)
                ))
            })?;
            let value = h
                .mac_key_value
                .as_deref()
                .ok_or_else(|| FileError::MacMethod("no encrypted MACKey".into()))?;
            let data = decode_base64(value)
                .map_err(|()| FileError::MacMethod("MACKey is not valid base64".into()))?;
            let key = enc_key.as_ref().ok_or(FileError::KeyRequired)?;
            if key.len() != cipher.key_len() {
                return Err(FileError::KeySize {
                    len: key.len(),
                    cipher: cipher.name(),
                    needed: cipher.key_len(),
                }
                .into());
            }
            let mac_key = crypto::decrypt(cipher, key, &data).map_err(|_| FileError::WrongKey)?;
            if mac_key.is_empty() {
                return Err(FileError::MacMethod("empty MAC key".into()).into());
            }
            Some((alg, mac_key))
        } else {
            None
        };
        Ok(Keys { enc_key, mac })
    }

    fn derive(&self, password: &Zeroizing<String>) -> Result<Zeroizing<Vec<u8>>, ImportError> {
        let h = &self.header;
        let kdf = h.kdf_uri.as_deref().unwrap_or_default();
        if !matches!(
            kdf,
            "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2"
                | "http://www.w3.org/2009/xmlenc11#pbkdf2"
        ) {
            return Err(
                FileError::KeyDerivation(format!("unsupported method {}", quote(kdf))).into(),
            );
        }
        let salt = h
            .salt
            .as_deref()
            .ok_or_else(|| FileError::KeyDerivation("no salt".into()))?;
        let salt = decode_base64(salt)
            .map_err(|()| FileError::KeyDerivation("salt is not valid base64".into()))?;
        let iterations = h
            .iterations
            .as_deref()
            .ok_or_else(|| FileError::KeyDerivation("no iteration count".into()))?;
        let iterations: u32 = parse_decimal(iterations)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                FileError::KeyDerivation(format!("bad iteration count {}", quote(iterations)))
            })?;
        if iterations > self.limits.max_pbkdf2_iterations {
            return Err(FileError::KeyDerivation(format!(
                "{iterations} iterations exceed the limit of {}",
                self.limits.max_pbkdf2_iterations
            ))
            .into());
        }
        let from_cipher = h
            .mac_key_cipher_uri
            .as_deref()
            .and_then(Cipher::from_uri)
            .map(Cipher::key_len);
        let len = match h.key_length.as_deref() {
            Some(text) => parse_decimal(text)
                .and_then(|v| usize::try_from(v).ok())
                .filter(|v| matches!(v, 16 | 24 | 32))
                .ok_or_else(|| {
                    FileError::KeyDerivation(format!("bad key length {}", quote(text)))
                })?,
            None => from_cipher.ok_or_else(|| FileError::KeyDerivation("no key length".into()))?,
        };
        let prf = match h.prf_uri.as_deref() {
            None | Some("") => Prf::HmacSha1,
            Some(uri) => Prf::from_uri(uri).ok_or_else(|| {
                FileError::KeyDerivation(format!("unsupported PRF {}", quote(uri)))
            })?,
        };
        Ok(prf.derive(password.as_bytes(), &salt, iterations, len))
    }

    fn finish_package(&mut self, pkg: Pkg) -> Result<KeyPackage, Finish> {
        let package = PackageRef {
            position: Position::Package(pkg.position),
            key_id: pkg.key_id.clone(),
            serial: pkg.serial.clone(),
        };
        let fail = |kind| {
            Finish::Package(PackageError {
                package: package.clone(),
                kind,
            })
        };
        if let Some(kind) = pkg.error.clone() {
            return Err(fail(kind));
        }
        if pkg.keys_seen == 0 {
            return Err(fail(PackageErrorKind::NoKey));
        }
        let algorithm = match pkg.algorithm_uri.as_deref() {
            None => return Err(fail(PackageErrorKind::MissingAlgorithm)),
            Some(uri) => Algorithm::from_uri(uri).ok_or_else(|| {
                fail(PackageErrorKind::UnknownAlgorithm(
                    uri.trim().chars().take(128).collect(),
                ))
            })?,
        };
        if algorithm != Algorithm::Pin
            && let Some(serial) = &pkg.serial
        {
            if let Some(first) = self.serials.get(serial.as_str()) {
                return Err(fail(PackageErrorKind::DuplicateSerial {
                    serial: serial.clone(),
                    first: Box::new(PackageRef {
                        position: Position::Package(*first),
                        key_id: None,
                        serial: Some(serial.clone()),
                    }),
                }));
            }
            self.serials.insert(serial.as_str().into(), pkg.position);
        }
        if pkg.data.iter().any(|d| d.cipher_value.is_some()) {
            self.encrypted_seen = true;
        }
        let keys = self.keys.as_ref();
        let mac_refuses_file = self.mac_policy == MacPolicy::RefuseFile;
        let open =
            |kind: DataKind, field: &DataField| -> Result<Option<Zeroizing<Vec<u8>>>, Finish> {
                match open_value(kind, field, keys) {
                    Ok(v) => Ok(v),
                    Err(k @ PackageErrorKind::MacMismatch { .. }) if mac_refuses_file => {
                        Err(Finish::File(FileError::Integrity(Box::new(PackageError {
                            package: package.clone(),
                            kind: k,
                        }))))
                    }
                    Err(k) => Err(fail(k)),
                }
            };
        let secret = open(DataKind::Secret, pkg.data(DataKind::Secret))?
            .ok_or_else(|| fail(PackageErrorKind::MissingSecret))?;
        let (min, max) = match algorithm {
            Algorithm::Pin => (1, 64),
            _ => (self.limits.min_secret_len, self.limits.max_secret_len),
        };
        if secret.len() < min || secret.len() > max {
            return Err(fail(PackageErrorKind::SecretLength {
                len: secret.len(),
                min,
                max,
            }));
        }
        let int = |kind: DataKind, signed: bool| -> Result<Option<i128>, Finish> {
            let field = pkg.data(kind);
            if let Some(text) = &field.plain
                && field.cipher_value.is_none()
            {
                let t = text.trim();
                let v = if signed {
                    parse_signed(t)
                } else {
                    parse_decimal(t).map(i128::from)
                };
                return v.map(Some).ok_or_else(|| {
                    fail(PackageErrorKind::InvalidField {
                        field: kind.name(),
                        reason: format!("{} is not an integer", quote(t)),
                    })
                });
            }
            let Some(bytes) = open(kind, field)? else {
                return Ok(None);
            };
            if bytes.is_empty() || bytes.len() > 8 {
                return Err(fail(PackageErrorKind::InvalidField {
                    field: kind.name(),
                    reason: format!("encrypted integer of {} bytes", bytes.len()),
                }));
            }
            let mut v: i128 = 0;
            for b in bytes.iter() {
                v = (v << 8) | i128::from(*b);
            }
            if signed && bytes.len() == 8 && v >= 1 << 63 {
                v -= 1 << 64;
            }
            Ok(Some(v))
        };
        let range =
            |kind: DataKind, v: Option<i128>, lo: i128, hi: i128| -> Result<Option<i128>, Finish> {
                match v {
                    Some(x) if x < lo || x > hi => Err(fail(PackageErrorKind::InvalidField {
                        field: kind.name(),
                        reason: format!("{x} is out of range"),
                    })),
                    other => Ok(other),
                }
            };
        let counter = range(
            DataKind::Counter,
            int(DataKind::Counter, false)?,
            0,
            i128::from(u64::MAX),
        )?;
        let time = range(
            DataKind::Time,
            int(DataKind::Time, false)?,
            0,
            i128::from(u64::MAX),
        )?;
        let interval = range(
            DataKind::TimeInterval,
            int(DataKind::TimeInterval, false)?,
            1,
            i128::from(u32::MAX),
        )?;
        let drift = range(
            DataKind::TimeDrift,
            int(DataKind::TimeDrift, true)?,
            i128::from(i64::MIN),
            i128::from(i64::MAX),
        )?;
        let hash = match pkg.suite.as_deref() {
            None => HashAlgorithm::Sha1,
            Some(s) => HashAlgorithm::from_suite(s).ok_or_else(|| {
                fail(PackageErrorKind::InvalidField {
                    field: "Suite",
                    reason: format!("unsupported suite {}", quote(s)),
                })
            })?,
        };
        let response = match pkg.response {
            None => None,
            Some(Err(kind)) => return Err(fail(kind)),
            Some(Ok(r)) => Some(r),
        };
        if matches!(algorithm, Algorithm::Hotp | Algorithm::Totp)
            && let Some(r) = response
            && (r.encoding != Encoding::Decimal || !(6..=10).contains(&r.length))
        {
            return Err(fail(PackageErrorKind::InvalidField {
                field: "ResponseFormat",
                reason: format!(
                    "{} {} digits (HOTP/TOTP need 6 to 10 decimal digits)",
                    r.length,
                    r.encoding.as_str()
                ),
            }));
        }
        let date = |field: &'static str, text: &Option<String>| -> Result<Option<i64>, Finish> {
            match text {
                None => Ok(None),
                Some(t) => parse_datetime(t).map(Some).ok_or_else(|| {
                    fail(PackageErrorKind::InvalidField {
                        field,
                        reason: format!("{} is not an xs:dateTime", quote(t)),
                    })
                }),
            }
        };
        let start_date = match date("StartDate", &pkg.policy_start)? {
            Some(d) => Some(d),
            None => date("DeviceInfo/StartDate", &pkg.device_start)?,
        };
        let expiry_date = match date("ExpiryDate", &pkg.policy_expiry)? {
            Some(d) => Some(d),
            None => date("DeviceInfo/ExpiryDate", &pkg.device_expiry)?,
        };
        let narrow = |v: Option<i128>| v.and_then(|x| u64::try_from(x).ok());
        Ok(KeyPackage {
            position: pkg.position,
            key_id: pkg.key_id,
            serial: pkg.serial,
            manufacturer: pkg.manufacturer,
            model: pkg.model,
            issuer: pkg.issuer,
            algorithm,
            hash,
            response,
            counter: narrow(counter),
            time: narrow(time),
            time_interval: interval.and_then(|x| u32::try_from(x).ok()),
            time_drift: drift.and_then(|x| i64::try_from(x).ok()),
            start_date,
            expiry_date,
            user_id: pkg.key_user_id.or(pkg.device_user_id),
            pin_policy: pkg.pin_policy,
            secret,
        })
    }
}

impl<R: Read> Iterator for PskcReader<'_, R> {
    type Item = Result<KeyPackage, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = self.step();
        match &item {
            None | Some(Err(ImportError::File(_))) => {
                self.finished = true;
                self.pkg = None;
                self.text.zeroize();
                self.buf.zeroize();
            }
            _ => {}
        }
        item
    }
}

enum Closing {
    Package,
    Container,
    Other,
}

enum Finish {
    Package(PackageError),
    File(FileError),
}

/// Decrypts (after checking its MAC) or decodes one Data value.
fn open_value(
    kind: DataKind,
    field: &DataField,
    keys: Option<&Keys>,
) -> Result<Option<Zeroizing<Vec<u8>>>, PackageErrorKind> {
    let name = kind.name();
    if let Some(cv) = &field.cipher_value {
        let uri = field.cipher_uri.as_deref().unwrap_or_default();
        let cipher = Cipher::from_uri(uri).ok_or_else(|| {
            PackageErrorKind::UnsupportedEncryption(uri.chars().take(128).collect())
        })?;
        let data =
            decode_base64(cv).map_err(|()| PackageErrorKind::InvalidBase64 { field: name })?;
        let keys = keys.ok_or(PackageErrorKind::Decrypt { field: name })?;
        let Some((mac_alg, mac_key)) = &keys.mac else {
            return Err(PackageErrorKind::MissingMac { field: name });
        };
        let mac_text = field
            .mac
            .as_deref()
            .ok_or(PackageErrorKind::MissingMac { field: name })?;
        let mac = decode_base64(mac_text)
            .map_err(|()| PackageErrorKind::InvalidBase64 { field: "ValueMAC" })?;
        if !mac_alg.verify(mac_key, &data, &mac) {
            return Err(PackageErrorKind::MacMismatch { field: name });
        }
        let key = keys
            .enc_key
            .as_ref()
            .ok_or(PackageErrorKind::Decrypt { field: name })?;
        return crypto::decrypt(cipher, key, &data)
            .map(Some)
            .map_err(|e| match e {
                DecryptError::KeySize => PackageErrorKind::KeySizeMismatch {
                    field: name,
                    algorithm: cipher.name(),
                    key_len: key.len(),
                },
                DecryptError::Invalid => PackageErrorKind::Decrypt { field: name },
            });
    }
    match &field.plain {
        None => Ok(None),
        Some(text) => decode_base64(text)
            .map(Some)
            .map_err(|()| PackageErrorKind::InvalidBase64 { field: name }),
    }
}

/// Base64 with XML whitespace anywhere, into a zeroizing buffer.
pub(crate) fn decode_base64(text: &str) -> Result<Zeroizing<Vec<u8>>, ()> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        text.bytes()
            .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .collect(),
    );
    let len = BASE64.decode_len(compact.len()).map_err(|_| ())?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    let n = BASE64.decode_mut(&compact, &mut out).map_err(|_| ())?;
    out.truncate(n);
    Ok(out)
}

fn parse_decimal(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn parse_signed(text: &str) -> Option<i128> {
    let t = text.trim();
    match t.strip_prefix('-') {
        Some(rest) => parse_decimal(rest).map(|v| -i128::from(v)),
        None => parse_decimal(t.strip_prefix('+').unwrap_or(t)).map(i128::from),
    }
}

fn attr<'x>(attrs: &'x [(String, String)], name: &str) -> Option<&'x str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn response_format(attrs: &[(String, String)]) -> Result<ResponseFormat, PackageErrorKind> {
    let bad = |reason: String| PackageErrorKind::InvalidField {
        field: "ResponseFormat",
        reason,
    };
    let length = attr(attrs, "Length").ok_or_else(|| bad("no Length".into()))?;
    let length = parse_decimal(length)
        .and_then(|v| u8::try_from(v).ok())
        .filter(|v| *v >= 1)
        .ok_or_else(|| bad(format!("Length {}", quote(length))))?;
    let encoding = attr(attrs, "Encoding").ok_or_else(|| bad("no Encoding".into()))?;
    let encoding =
        Encoding::parse(encoding).ok_or_else(|| bad(format!("Encoding {}", quote(encoding))))?;
    let check_digit = match attr(attrs, "CheckDigits").map(str::trim) {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => return Err(bad(format!("CheckDigits {}", quote(other)))),
    };
    Ok(ResponseFormat {
        length,
        encoding,
        check_digit,
    })
}

fn pin_policy(attrs: &[(String, String)]) -> Result<PinPolicy, PackageErrorKind> {
    let bad = |name: &str, v: &str| PackageErrorKind::InvalidField {
        field: "PINPolicy",
        reason: format!("{name} {}", quote(v)),
    };
    let num = |name: &str| -> Result<Option<u32>, PackageErrorKind> {
        attr(attrs, name)
            .map(|v| {
                parse_decimal(v)
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| bad(name, v))
            })
            .transpose()
    };
    Ok(PinPolicy {
        pin_key_id: attr(attrs, "PINKeyId").map(|s| s.trim().to_owned()),
        usage_mode: attr(attrs, "PINUsageMode")
            .map(|v| PinUsageMode::parse(v).ok_or_else(|| bad("PINUsageMode", v)))
            .transpose()?,
        max_failed_attempts: num("MaxFailedAttempts")?,
        min_length: num("MinLength")?,
        max_length: num("MaxLength")?,
        encoding: attr(attrs, "PINEncoding")
            .map(|v| Encoding::parse(v).ok_or_else(|| bad("PINEncoding", v)))
            .transpose()?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    KeyContainer,
    EncryptionKey,
    KeyName,
    DerivedKey,
    KeyDerivationMethod,
    Pbkdf2Params,
    Salt,
    Specified,
    IterationCount,
    KeyLength,
    Prf,
    MacMethod,
    MacKey,
    EncryptionMethod,
    CipherData,
    CipherValue,
    KeyPackage,
    DeviceInfo,
    Manufacturer,
    SerialNo,
    Model,
    StartDate,
    ExpiryDate,
    Key,
    Issuer,
    AlgorithmParameters,
    Suite,
    ResponseFormat,
    Data,
    Secret,
    Counter,
    Time,
    TimeInterval,
    TimeDrift,
    PlainValue,
    EncryptedValue,
    ValueMac,
    Policy,
    PinPolicy,
    UserId,
    Signature,
    Other,
}

impl Tag {
    fn from_local(name: &str) -> Self {
        match name {
            "KeyContainer" => Self::KeyContainer,
            "EncryptionKey" => Self::EncryptionKey,
            "KeyName" => Self::KeyName,
            "DerivedKey" => Self::DerivedKey,
            "KeyDerivationMethod" => Self::KeyDerivationMethod,
            "PBKDF2-params" => Self::Pbkdf2Params,
            "Salt" => Self::Salt,
            "Specified" => Self::Specified,
            "IterationCount" => Self::IterationCount,
            "KeyLength" => Self::KeyLength,
            "PRF" => Self::Prf,
            "MACMethod" => Self::MacMethod,
            "MACKey" => Self::MacKey,
            "EncryptionMethod" => Self::EncryptionMethod,
            "CipherData" => Self::CipherData,
            "CipherValue" => Self::CipherValue,
            "KeyPackage" => Self::KeyPackage,
            "DeviceInfo" => Self::DeviceInfo,
            "Manufacturer" => Self::Manufacturer,
            "SerialNo" => Self::SerialNo,
            "Model" => Self::Model,
            "StartDate" => Self::StartDate,
            "ExpiryDate" => Self::ExpiryDate,
            "Key" => Self::Key,
            "Issuer" => Self::Issuer,
            "AlgorithmParameters" => Self::AlgorithmParameters,
            "Suite" => Self::Suite,
            "ResponseFormat" => Self::ResponseFormat,
            "Data" => Self::Data,
            "Secret" => Self::Secret,
            "Counter" => Self::Counter,
            "Time" => Self::Time,
            "TimeInterval" => Self::TimeInterval,
            "TimeDrift" => Self::TimeDrift,
            "PlainValue" => Self::PlainValue,
            "EncryptedValue" => Self::EncryptedValue,
            "ValueMAC" => Self::ValueMac,
            "Policy" => Self::Policy,
            "PINPolicy" => Self::PinPolicy,
            "UserId" => Self::UserId,
            "Signature" => Self::Signature,
            _ => Self::Other,
        }
    }

    fn has_wanted_attributes(self) -> bool {
        matches!(
            self,
            Self::KeyContainer
                | Self::KeyDerivationMethod
                | Self::Prf
                | Self::MacMethod
                | Self::EncryptionMethod
                | Self::Key
                | Self::ResponseFormat
                | Self::PinPolicy
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Secret,
    Counter,
    Time,
    TimeInterval,
    TimeDrift,
}

impl DataKind {
    fn of(tag: Tag) -> Option<Self> {
        match tag {
            Tag::Secret => Some(Self::Secret),
            Tag::Counter => Some(Self::Counter),
            Tag::Time => Some(Self::Time),
            Tag::TimeInterval => Some(Self::TimeInterval),
            Tag::TimeDrift => Some(Self::TimeDrift),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Secret => "Secret",
            Self::Counter => "Counter",
            Self::Time => "Time",
            Self::TimeInterval => "TimeInterval",
            Self::TimeDrift => "TimeDrift",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataPart {
    Plain,
    CipherValue,
    Mac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PkgField {
    Manufacturer,
    SerialNo,
    Model,
    DeviceStart,
    DeviceExpiry,
    Issuer,
    Suite,
    PolicyStart,
    PolicyExpiry,
    DeviceUserId,
    KeyUserId,
    Data(DataKind, DataPart),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cap {
    KeyName,
    Salt,
    IterationCount,
    KeyLength,
    MacKeyValue,
    Pkg(PkgField),
}

/// Which text the element at the top of `stack` carries, if any okey reads.
fn capture_for(stack: &[Tag]) -> Option<Cap> {
    use Tag as T;
    let field = |f| Some(Cap::Pkg(f));
    match stack {
        [T::KeyContainer, T::EncryptionKey, T::KeyName] => Some(Cap::KeyName),
        [
            T::KeyContainer,
            T::EncryptionKey,
            T::DerivedKey,
            T::KeyDerivationMethod,
            T::Pbkdf2Params,
            rest @ ..,
        ] => match rest {
            [T::Salt, T::Specified] => Some(Cap::Salt),
            [T::IterationCount] => Some(Cap::IterationCount),
            [T::KeyLength] => Some(Cap::KeyLength),
            _ => None,
        },
        [
            T::KeyContainer,
            T::MacMethod,
            T::MacKey,
            T::CipherData,
            T::CipherValue,
        ] => Some(Cap::MacKeyValue),
        [T::KeyContainer, T::KeyPackage, T::DeviceInfo, leaf] => match leaf {
            T::Manufacturer => field(PkgField::Manufacturer),
            T::SerialNo => field(PkgField::SerialNo),
            T::Model => field(PkgField::Model),
            T::StartDate => field(PkgField::DeviceStart),
            T::ExpiryDate => field(PkgField::DeviceExpiry),
            T::UserId => field(PkgField::DeviceUserId),
            _ => None,
        },
        [T::KeyContainer, T::KeyPackage, T::Key, T::Issuer] => field(PkgField::Issuer),
        [T::KeyContainer, T::KeyPackage, T::Key, T::UserId] => field(PkgField::KeyUserId),
        [
            T::KeyContainer,
            T::KeyPackage,
            T::Key,
            T::AlgorithmParameters,
            T::Suite,
        ] => field(PkgField::Suite),
        [
            T::KeyContainer,
            T::KeyPackage,
            T::Key,
            T::Policy,
            T::StartDate,
        ] => field(PkgField::PolicyStart),
        [
            T::KeyContainer,
            T::KeyPackage,
            T::Key,
            T::Policy,
            T::ExpiryDate,
        ] => field(PkgField::PolicyExpiry),
        [
            T::KeyContainer,
            T::KeyPackage,
            T::Key,
            T::Data,
            d,
            rest @ ..,
        ] => {
            let kind = DataKind::of(*d)?;
            let part = match rest {
                [T::PlainValue] => DataPart::Plain,
                [T::EncryptedValue, T::CipherData, T::CipherValue] => DataPart::CipherValue,
                [T::ValueMac] => DataPart::Mac,
                _ => return None,
            };
            field(PkgField::Data(kind, part))
        }
        _ => None,
    }
}

#[derive(Default)]
struct Header {
    key_name: Option<String>,
    derived: bool,
    kdf_uri: Option<String>,
    salt: Option<String>,
    iterations: Option<String>,
    key_length: Option<String>,
    prf_uri: Option<String>,
    mac_method: bool,
    mac_uri: Option<String>,
    mac_key_cipher_uri: Option<String>,
    mac_key_value: Option<String>,
}

struct Keys {
    enc_key: Option<Zeroizing<Vec<u8>>>,
    mac: Option<(MacAlgorithm, Zeroizing<Vec<u8>>)>,
}

#[derive(Default)]
struct DataField {
    plain: Option<Zeroizing<String>>,
    cipher_uri: Option<String>,
    cipher_value: Option<Zeroizing<String>>,
    mac: Option<String>,
}

struct Pkg {
    position: usize,
    key_id: Option<String>,
    serial: Option<String>,
    manufacturer: Option<String>,
    model: Option<String>,
    issuer: Option<String>,
    algorithm_uri: Option<String>,
    suite: Option<String>,
    response: Option<Result<ResponseFormat, PackageErrorKind>>,
    data: [DataField; 5],
    device_start: Option<String>,
    device_expiry: Option<String>,
    policy_start: Option<String>,
    policy_expiry: Option<String>,
    device_user_id: Option<String>,
    key_user_id: Option<String>,
    pin_policy: Option<PinPolicy>,
    keys_seen: usize,
    error: Option<PackageErrorKind>,
}

impl Pkg {
    fn new(position: usize) -> Self {
        Self {
            position,
            key_id: None,
            serial: None,
            manufacturer: None,
            model: None,
            issuer: None,
            algorithm_uri: None,
            suite: None,
            response: None,
            data: Default::default(),
            device_start: None,
            device_expiry: None,
            policy_start: None,
            policy_expiry: None,
            device_user_id: None,
            key_user_id: None,
            pin_policy: None,
            keys_seen: 0,
            error: None,
        }
    }

    fn fail(&mut self, kind: PackageErrorKind) {
        if self.error.is_none() {
            self.error = Some(kind);
        }
    }

    fn data(&self, kind: DataKind) -> &DataField {
        match kind {
            DataKind::Secret => &self.data[0],
            DataKind::Counter => &self.data[1],
            DataKind::Time => &self.data[2],
            DataKind::TimeInterval => &self.data[3],
            DataKind::TimeDrift => &self.data[4],
        }
    }

    fn data_mut(&mut self, kind: DataKind) -> &mut DataField {
        match kind {
            DataKind::Secret => &mut self.data[0],
            DataKind::Counter => &mut self.data[1],
            DataKind::Time => &mut self.data[2],
            DataKind::TimeInterval => &mut self.data[3],
            DataKind::TimeDrift => &mut self.data[4],
        }
    }
}

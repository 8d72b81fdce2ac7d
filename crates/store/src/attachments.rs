//! Attachments: files kept with a record of any kind (a request's justificatifs, later a support
//! case's screenshots), sealed under the active data key like the seeds.
//!
//! The owner is a text such as `request:7`; this module knows nothing of what it owns. A file
//! is checked before anything of it is kept ([`okey_domain::request::check_attachment`]: name,
//! size, content type by magic bytes), then its SHA-256 is taken and its content sealed with an
//! AAD binding the owner, the digest and the data key version, so a sealed blob cannot be moved
//! to another owner or passed off as another file. Content is never executed nor served with a
//! type other than the one its bytes showed. The backup carries attachments as typed records
//! (opened, then sealed again under the restored store's data key), and a data key rotation
//! seals them again under the new key.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::StoreError;
use crate::backend::WriteTx;
use crate::seal;
use crate::store::{KeyRing, Store};

/// Longest owner text.
pub const MAX_OWNER_LEN: usize = 80;

/// An attachment as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    /// Id (0 before insertion).
    pub id: u64,
    /// What it belongs to, e.g. `request:7`.
    pub owner: String,
    /// File name as given (checked: no path, no control character).
    pub name: String,
    /// Media type its content showed.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// Data key version it is sealed under.
    pub key_version: u32,
    /// The sealed content.
    pub sealed_content: Vec<u8>,
    /// Who added it.
    pub created_by: String,
    /// When.
    pub created_at: u64,
}

impl std::fmt::Debug for AttachmentRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentRow")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// What is shown of an attachment: never its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// Id.
    pub id: u64,
    /// File name.
    pub name: String,
    /// Media type its content showed.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, in hex.
    pub sha256: String,
    /// When it was added.
    pub created_at: u64,
}

impl From<&AttachmentRow> for AttachmentInfo {
    fn from(a: &AttachmentRow) -> Self {
        AttachmentInfo {
            id: a.id,
            name: a.name.clone(),
            media_type: a.media_type.clone(),
            size: a.size,
            sha256: hex::encode(a.sha256),
            created_at: a.created_at,
        }
    }
}

/// A file offered as an attachment, not yet checked.
#[derive(Clone)]
pub struct NewAttachment {
    /// File name.
    pub name: String,
    /// Media type the sender declared, if any (checked against the content).
    pub declared: Option<String>,
    /// Content.
    pub content: Vec<u8>,
}

impl std::fmt::Debug for NewAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAttachment")
            .field("name", &self.name)
            .field("size", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// AAD of an attachment's content.
pub(crate) fn attachment_aad(owner: &str, sha256: &[u8; 32], version: u32) -> Vec<u8> {
    let mut bound = String::with_capacity(owner.len() + 65);
    bound.push_str(owner);
    bound.push('\0');
    bound.push_str(&hex::encode(sha256));
    seal::aad(b"okey/attachment/v1\0", &bound, version)
}

fn check_owner(owner: &str) -> Result<(), StoreError> {
    if owner.is_empty()
        || owner.len() > MAX_OWNER_LEN
        || !owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'-' || b == b'_')
    {
        return Err(StoreError::invalid(
            "owner",
            "1 to 80 letters, digits, ':', '-' or '_'",
        ));
    }
    Ok(())
}

impl Store {
    /// Check `files` and seal them for `owner`, ready to insert (nothing is written here). The
    /// first refused file refuses all of them.
    pub(crate) fn seal_attachments(
        &self,
        owner: &str,
        files: &[NewAttachment],
        by: &str,
        now: u64,
    ) -> Result<Vec<AttachmentRow>, StoreError> {
        check_owner(owner)?;
        let keys = self.keys();
        let k = keys.active()?;
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let kind =
                okey_domain::request::check_attachment(&f.name, f.declared.as_deref(), &f.content)
                    .map_err(|e| StoreError::invalid("attachment", e.to_string()))?;
            let sha256: [u8; 32] = Sha256::digest(&f.content).into();
            let sealed = k.seal(&attachment_aad(owner, &sha256, k.version()), &f.content)?;
            out.push(AttachmentRow {
                id: 0,
                owner: owner.to_owned(),
                name: f.name.clone(),
                media_type: kind.media_type().to_owned(),
                size: f.content.len() as u64,
                sha256,
                key_version: k.version(),
                sealed_content: sealed,
                created_by: by.to_owned(),
                created_at: now,
            });
        }
        Ok(out)
    }

    /// The attachments of `owner` (never their content).
    pub fn attachment_infos(&self, owner: &str) -> Result<Vec<AttachmentInfo>, StoreError> {
        check_owner(owner)?;
        let owner = owner.to_owned();
        let rows = self.write_blocking(move |tx| tx.requests().attachments(&owner))?;
        Ok(rows.iter().map(AttachmentInfo::from).collect())
    }

    /// One attachment of `owner`, opened: its info and content. The caller decides who may read
    /// it; the content is checked against its digest.
    pub fn attachment_content(
        &self,
        owner: &str,
        id: u64,
    ) -> Result<(AttachmentInfo, Zeroizing<Vec<u8>>), StoreError> {
        check_owner(owner)?;
        let o = owner.to_owned();
        let rows = self.write_blocking(move |tx| tx.requests().attachments(&o))?;
        let row = rows
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| StoreError::Precondition(format!("{owner} has no attachment {id}")))?;
        let plain = open(&self.keys(), &row)?;
        Ok((AttachmentInfo::from(&row), plain))
    }
}

/// Open an attachment's content and check its digest.
pub(crate) fn open(keys: &KeyRing, a: &AttachmentRow) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let bad = || StoreError::Unseal {
        what: "attachment",
        subject: format!("{} #{}", a.owner, a.id),
    };
    let k = keys.data.get(&a.key_version).ok_or_else(bad)?;
    let plain = k
        .open(
            &attachment_aad(&a.owner, &a.sha256, a.key_version),
            &a.sealed_content,
        )
        .ok_or_else(bad)?;
    let digest: [u8; 32] = Sha256::digest(&plain[..]).into();
    if digest != a.sha256 {
        return Err(bad());
    }
    Ok(plain)
}

/// Seal again, under the data key `to`, every attachment sealed under another (a rotation's
/// last transaction, before old keys are retired).
pub(crate) fn reseal_all(
    tx: &mut dyn WriteTx,
    keys: &KeyRing,
    to: &seal::SealKey,
) -> Result<u64, StoreError> {
    let rows = tx
        .requests()
        .attachments_not_sealed_under(to.version(), u32::MAX)?;
    for a in &rows {
        let plain = open(keys, a)?;
        let sealed = to.seal(&attachment_aad(&a.owner, &a.sha256, to.version()), &plain)?;
        tx.requests()
            .reseal_attachment(a.id, to.version(), &sealed)?;
    }
    Ok(rows.len() as u64)
}

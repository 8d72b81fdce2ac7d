//! okey's sealed store: durable, replay-proof token state, sealed seeds, hash-chained audit.
//!
//! # Why it looks like this
//!
//! * **Never accept a code twice.** A verify reads a token's state, lets `okey-otp` check the
//!   code (constant time over the whole window) and gets a `CodeVerified` proof holding the state
//!   read and the state to write. The store commits that as a *compare-and-set* on the row's
//!   version, and only once the commit is fsync'd does [`Store::verify`] answer `accepted`. Two
//!   concurrent verifies of one code: one wins the compare-and-set; the loser re-reads, finds
//!   the counter already past its code, and reports a replay.
//! * **Durability without one fsync per login.** One writer thread owns the write connection.
//!   Callers queue jobs and await a oneshot answer; the writer drains the queue into one
//!   transaction (each job in its own savepoint, so one job's failure is its own), commits once,
//!   then answers everyone. [`Durability::PerCommit`] does a transaction per job: the baseline
//!   the benchmark compares against.
//! * **Seeds are never in the clear at rest.** Seeds, the PIN pepper and the audit key are sealed
//!   with AES-256-GCM under a data key; the data key is wrapped by the master key (a 0600 file,
//!   an environment variable, bytes handed in, or an AES key that stays in an HSM and wraps
//!   through PKCS#11: see the `hsm` module). The associated data binds each blob to its
//!   owner (the serial) and key version, so a blob moved to another row does not open. Rotating
//!   the master key re-wraps the data key; rotating the data key re-seals everything in batches
//!   while verifies go on. Backups are encrypted under a key derived from a passphrase.
//! * **A verify touches no disk but its commit.** Unsealed keys live only as the core's
//!   precomputed HMAC states in a bounded LRU, zeroized on eviction and drop, next to the few
//!   row fields a verify needs. The cache is a hint: every state change is a compare-and-set
//!   and every rejection not made through one is re-checked against the database, so a stale
//!   entry can cost a retry but never a wrong answer (which is also what lets several nodes
//!   share one database later).
//! * **Timing does not tell who exists.** Unknown serials and users get the same MAC work as a
//!   real check (`verify_unknown`, `check_pin_unknown`) before `UnknownSubject`.
//! * **Everything is audited in the same commit.** Each verify outcome and each change appends a
//!   record to an HMAC chain (keyed by the sealed audit key) inside the transaction that makes the
//!   change, so the log and the state cannot disagree. [`Store::audit_verify`] finds a changed,
//!   removed or reordered record; given a head reported earlier and kept elsewhere,
//!   [`Store::audit_verify_anchored`] also finds that the newest records were removed. The head
//!   is signed with an Ed25519 key sealed like the seeds ([`Store::sign_anchor`], [`anchor`]);
//!   [`Store::audit_verify_anchors`] checks the chain against every published anchor.
//! * **Storage behind a trait.** [`backend::Backend`] and [`backend::WriteTx`] are all the store
//!   needs from a database; their docs list what a PostgreSQL backend must guarantee
//!   (compare-and-set with row conditions, a serialised audit chain, fsync'd commit before the
//!   acknowledgement). SQLite (bundled, WAL, `synchronous=FULL`, versioned migrations) is the
//!   embedded default.
//!
//! # Lockout
//! Each wrong code or wrong PIN adds a failure. At `soft_after` failures (and each further one)
//! the token is soft-locked until `now + soft_lock_seconds`; at `hard_after` it is locked until
//! [`Store::unlock`]. A success resets the count. A passcode of the wrong shape (`BadFormat`)
//! tests no code and does not count; a replay of a just-used code does not count either (RADIUS
//! retransmissions must not lock people out). The same locks hold for OCRA checks, resyncs and
//! bench confirmations: a locked token has no code tested and no failure counted.
//!
//! # Audit actor
//! Verify records name the actor as `name@client` when a client is given.
#![forbid(unsafe_code)]

pub mod anchor;
pub mod attachments;
mod audit;
pub mod backend;
mod backup;
mod cache;
pub mod challenge;
mod clock;
pub mod custody_db;
mod directory;
pub mod directory_db;
mod error;
mod hsm;
mod lots;
mod notices;
pub mod outbox;
pub mod pg;
pub mod request_db;
mod requests;
mod rotate;
mod seal;
pub mod sqlite;
mod store;
mod support;
pub mod support_db;
mod types;
mod verify;
mod writer;

pub use anchor::{AnchorError, AnchorPublicKey, SignedAnchor, read_anchors};
pub use attachments::{AttachmentInfo, NewAttachment};
pub use directory::{DirectoryImport, Located};
pub use error::StoreError;
pub use lots::*;
pub use notices::{LifecycleMailer, Notice};
pub use okey_otp::{OcraSuite, Pin};
pub use requests::{
    Charter, NewRequest, PickupSlot, RequestEvent, RequestExpiry, RequestMail, RequestNotice,
    RequestRow, RequestView,
};
pub use store::{Store, create_private_dir};
pub use support::{CaseView, MAX_CASES, MAX_TEMPORARY_DAYS, NewCase, case_owner};
pub use types::*;
pub use zeroize::Zeroizing;

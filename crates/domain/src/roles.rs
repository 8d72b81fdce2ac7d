//! Caller roles and the table of operations each may perform.

use std::fmt;
use std::str::FromStr;

/// A caller's role. A principal may hold several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// RADIUS and SSO front ends: verify and trigger challenges, nothing else.
    Verifier,
    /// USB bench technicians: initialise tokens, check the codes they show, resync them.
    Technician,
    /// The support centre: find a key's owner, unlock, resync, enable/disable, PINs.
    Support,
    /// Operators: everything, including callers and revocation.
    Admin,
    /// Read-only: tokens and the audit chain.
    Auditor,
    /// A person acting on lots and keys in their own scope (a head of school, an inspector,
    /// a delegate): the lifecycle operations only, each further limited to the lots the person
    /// manages and the keys they hold.
    Manager,
    /// A trusted front end (the staff portal) that authenticates people itself and acts on
    /// behalf of one of them per request, named in the `okey-acting-person` metadata: the
    /// lifecycle and directory reads only, each limited by that person's functions and scope,
    /// and the support centre's unlock and resync for a person of the support centre.
    Portal,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 7] = [
        Role::Verifier,
        Role::Technician,
        Role::Support,
        Role::Admin,
        Role::Auditor,
        Role::Manager,
        Role::Portal,
    ];

    /// The role's name in configuration and API keys.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Verifier => "verifier",
            Role::Technician => "technician",
            Role::Support => "support",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Manager => "manager",
            Role::Portal => "portal",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role {s:?}: expected one of verifier, technician, support, admin, auditor, manager, portal"))
    }
}

/// Everything a caller can ask okey to do. One variant per RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Verify,
    TriggerChallenge,
    CreateToken,
    ImportTokens,
    ImportSeedFile,
    ExportStock,
    GetToken,
    ListTokens,
    AssignToken,
    SetPin,
    ResyncToken,
    UnlockToken,
    EnableToken,
    DisableToken,
    RevokeToken,
    BeginInitialisation,
    CompleteInitialisation,
    AbortInitialisation,
    VerifyAuditChain,
    ListAudit,
    GetAuditPublicKey,
    RotateMasterKey,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    WhoAmI,
    /// Lots and keys (LifecycleService): reads.
    ListLots,
    ShowLot,
    ShowKey,
    /// Lots and keys: custody changes. Beside the role, the acting person's party for the key
    /// (lot manager in scope, support centre, IT department) must be allowed by
    /// [`crate::RULES`].
    CreateLot,
    SetLotDelegate,
    RegisterKeys,
    MoveKeys,
    OrderKeys,
    CloseOrder,
    ReserveKeys,
    KeyAction,
    HandOverKey,
    ReturnKey,
    FoundKey,
    ConfirmHandOver,
    /// The keys the calling person holds.
    ListMyKeys,
    /// The holder of a key in use sets a new PIN, proving with a code that they hold the key.
    ChangeHolderPin,
    KeyReceipt,
    RunScheduledJobs,
    SendTestMail,
    ListMailQueue,
    /// The directory (DirectoryService): load units and people from the exports.
    ImportDirectory,
    /// The directory: one person or unit. Beside the role, a manager or portal sees only the
    /// people and units of the lots their person manages.
    ShowDirectory,
    /// Support cases (SupportService): open one. Beside the role, the acting person must be
    /// one [`crate::support::may_open`] allows (a direction team, an ENT correspondent, a
    /// primary school director).
    OpenCase,
    /// Support cases: the queue and one case. A manager or portal sees only the cases its
    /// person declared; internal notes only the support desk.
    ListCases,
    ShowCase,
    /// Support cases: a reply (mailed to the declarant) or an internal note (support only). A
    /// manager or portal replies only on the cases its person declared.
    ReplyCase,
    /// Support cases: give one to a support agent, resolve it (mailed), register the serials a
    /// "keys not in okey" case lists into the school's lot.
    AssignCase,
    ResolveCase,
    RegisterCaseKeys,
    /// A key that does not work: its diagnosis, and a temporary key bound to the holder's PIN.
    DiagnoseKey,
    IssueTemporaryKey,
    FileRequest,
    ListRequests,
    ShowRequest,
    DecideRequest,
    CancelRequest,
    SignCharter,
    SetRequestPin,
    BookPickup,
    OfferPickupSlot,
    ListPickupSlots,
    PublishCharter,
    EnrolSoftwareKey,
    /// Key requests: one attachment's content, for the request's parties (as ShowRequest).
    GetRequestAttachment,
    /// Support cases: one attachment's content, read as [`Operation::ShowCase`] is (its
    /// declarant and the support desk).
    GetCaseAttachment,
    /// Key requests: the current charter's document, for anyone who signs it.
    GetCharter,
}

impl Operation {
    /// Every operation, for exhaustive tests.
    pub const ALL: [Operation; 73] = [
        Operation::Verify,
        Operation::TriggerChallenge,
        Operation::CreateToken,
        Operation::ImportTokens,
        Operation::ImportSeedFile,
        Operation::ExportStock,
        Operation::GetToken,
        Operation::ListTokens,
        Operation::AssignToken,
        Operation::SetPin,
        Operation::ResyncToken,
        Operation::UnlockToken,
        Operation::EnableToken,
        Operation::DisableToken,
        Operation::RevokeToken,
        Operation::BeginInitialisation,
        Operation::CompleteInitialisation,
        Operation::AbortInitialisation,
        Operation::VerifyAuditChain,
        Operation::ListAudit,
        Operation::GetAuditPublicKey,
        Operation::RotateMasterKey,
        Operation::CreateApiKey,
        Operation::ListApiKeys,
        Operation::RevokeApiKey,
        Operation::WhoAmI,
        Operation::ListLots,
        Operation::ShowLot,
        Operation::ShowKey,
        Operation::CreateLot,
        Operation::SetLotDelegate,
        Operation::RegisterKeys,
        Operation::MoveKeys,
        Operation::OrderKeys,
        Operation::CloseOrder,
        Operation::ReserveKeys,
        Operation::KeyAction,
        Operation::HandOverKey,
        Operation::ReturnKey,
        Operation::FoundKey,
        Operation::ConfirmHandOver,
        Operation::ListMyKeys,
        Operation::ChangeHolderPin,
        Operation::KeyReceipt,
        Operation::RunScheduledJobs,
        Operation::SendTestMail,
        Operation::ListMailQueue,
        Operation::ImportDirectory,
        Operation::ShowDirectory,
        Operation::OpenCase,
        Operation::ListCases,
        Operation::ShowCase,
        Operation::ReplyCase,
        Operation::AssignCase,
        Operation::ResolveCase,
        Operation::RegisterCaseKeys,
        Operation::DiagnoseKey,
        Operation::IssueTemporaryKey,
        Operation::FileRequest,
        Operation::ListRequests,
        Operation::ShowRequest,
        Operation::DecideRequest,
        Operation::CancelRequest,
        Operation::SignCharter,
        Operation::SetRequestPin,
        Operation::BookPickup,
        Operation::OfferPickupSlot,
        Operation::ListPickupSlots,
        Operation::PublishCharter,
        Operation::EnrolSoftwareKey,
        Operation::GetRequestAttachment,
        Operation::GetCaseAttachment,
        Operation::GetCharter,
    ];

    /// The roles allowed to perform this operation. Anything not listed is denied.
    pub const fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            // Technicians verify a code read back from a token on the USB bench.
            Operation::Verify => &[Verifier, Support, Technician, Admin],
            Operation::TriggerChallenge => &[Verifier, Admin],
            Operation::CreateToken => &[Admin, Technician],
            Operation::ImportTokens
            | Operation::ImportSeedFile
            | Operation::ExportStock
            | Operation::RotateMasterKey => &[Admin],
            Operation::GetToken | Operation::ListTokens => &[Admin, Support, Technician, Auditor],
            Operation::AssignToken
            | Operation::SetPin
            | Operation::EnableToken
            | Operation::DisableToken => &[Admin, Support],
            // A portal unlocks and resyncs for a person of the support centre only (checked
            // from their functions by the handler).
            Operation::UnlockToken => &[Admin, Support, Portal],
            Operation::ResyncToken => &[Admin, Support, Technician, Portal],
            Operation::RevokeToken => &[Admin],
            Operation::BeginInitialisation
            | Operation::CompleteInitialisation
            | Operation::AbortInitialisation => &[Technician, Admin],
            Operation::VerifyAuditChain | Operation::ListAudit | Operation::GetAuditPublicKey => {
                &[Auditor, Admin]
            }
            Operation::CreateApiKey | Operation::ListApiKeys | Operation::RevokeApiKey => &[Admin],
            Operation::WhoAmI => &[
                Verifier, Technician, Support, Admin, Auditor, Manager, Portal,
            ],
            Operation::ListLots | Operation::ShowLot | Operation::ShowKey => {
                &[Admin, Support, Auditor, Manager, Portal]
            }
            Operation::CreateLot | Operation::SetLotDelegate | Operation::RunScheduledJobs => {
                &[Admin]
            }
            // A portal acts for a person: that person's party (the support centre's desk, from
            // their functions) decides, as for every custody change.
            Operation::RegisterKeys | Operation::FoundKey => &[Admin, Support, Portal],
            Operation::MoveKeys
            | Operation::OrderKeys
            | Operation::CloseOrder
            | Operation::ReserveKeys
            | Operation::KeyAction
            | Operation::HandOverKey
            | Operation::ReturnKey
            | Operation::ConfirmHandOver
            | Operation::KeyReceipt => &[Admin, Support, Manager, Portal],
            // Only the holder, through the portal that logged them in.
            Operation::ChangeHolderPin => &[Portal],
            // A person's own keys: a key bound to a person, or a portal acting for one.
            Operation::ListMyKeys => &[Manager, Portal],
            Operation::SendTestMail => &[Admin],
            Operation::ListMailQueue => &[Admin, Support],
            Operation::ImportDirectory => &[Admin],
            Operation::ShowDirectory => &[Admin, Support, Auditor, Manager, Portal],
            Operation::OpenCase | Operation::ReplyCase => &[Admin, Support, Manager, Portal],
            Operation::ListCases | Operation::ShowCase | Operation::GetCaseAttachment => {
                &[Admin, Support, Auditor, Manager, Portal]
            }
            // A portal assigns and resolves for a person of the support centre only (checked
            // from their functions by the handler).
            Operation::AssignCase | Operation::ResolveCase => &[Admin, Support, Portal],
            Operation::RegisterCaseKeys | Operation::DiagnoseKey | Operation::IssueTemporaryKey => {
                &[Admin, Support]
            }
            // Key requests are made by a person: the request's parties (requester, validator,
            // N+2, lot manager, support centre) decide the rest, in the store.
            Operation::FileRequest
            | Operation::ListRequests
            | Operation::ShowRequest
            | Operation::DecideRequest
            | Operation::CancelRequest
            | Operation::SignCharter
            | Operation::SetRequestPin
            | Operation::BookPickup
            | Operation::OfferPickupSlot
            | Operation::ListPickupSlots
            | Operation::EnrolSoftwareKey => &[Admin, Support, Manager, Portal],
            Operation::PublishCharter => &[Admin],
            Operation::GetRequestAttachment | Operation::GetCharter => {
                &[Admin, Support, Manager, Portal]
            }
        }
    }

    /// A stable name for logs and audit.
    pub fn name(self) -> String {
        format!("{self:?}")
    }
}

/// A refusal: the caller's roles do not include one that the operation allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation:?} needs one of the roles {allowed}")]
pub struct Denied {
    /// What was asked.
    pub operation: Operation,
    /// The roles that would have been allowed, comma-separated.
    pub allowed: String,
}

/// Allow `operation` if any of `roles` is in its table entry; deny otherwise.
pub fn authorize(roles: &[Role], operation: Operation) -> Result<(), Denied> {
    let allowed = operation.allowed_roles();
    if roles.iter().any(|r| allowed.contains(r)) {
        Ok(())
    } else {
        Err(Denied {
            operation,
            allowed: allowed
                .iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_may_only_verify_and_challenge_and_ask_who_it_is() {
        for op in Operation::ALL {
            let ok = authorize(&[Role::Verifier], op).is_ok();
            let expected = matches!(
                op,
                Operation::Verify | Operation::TriggerChallenge | Operation::WhoAmI
            );
            assert_eq!(ok, expected, "{op:?}");
        }
    }

    #[test]
    fn no_roles_means_nothing() {
        for op in Operation::ALL {
            assert!(authorize(&[], op).is_err(), "{op:?}");
        }
    }

    #[test]
    fn auditor_is_read_only() {
        let writes = [
            Operation::CreateToken,
            Operation::ImportTokens,
            Operation::ImportSeedFile,
            Operation::ExportStock,
            Operation::AssignToken,
            Operation::SetPin,
            Operation::ResyncToken,
            Operation::UnlockToken,
            Operation::EnableToken,
            Operation::DisableToken,
            Operation::RevokeToken,
            Operation::BeginInitialisation,
            Operation::CompleteInitialisation,
            Operation::AbortInitialisation,
            Operation::CreateApiKey,
            Operation::RevokeApiKey,
            Operation::CreateLot,
            Operation::SetLotDelegate,
            Operation::RegisterKeys,
            Operation::MoveKeys,
            Operation::OrderKeys,
            Operation::CloseOrder,
            Operation::ReserveKeys,
            Operation::KeyAction,
            Operation::HandOverKey,
            Operation::ReturnKey,
            Operation::FoundKey,
            Operation::ConfirmHandOver,
            Operation::ChangeHolderPin,
            Operation::RunScheduledJobs,
            Operation::Verify,
            Operation::TriggerChallenge,
            Operation::ImportDirectory,
            Operation::OpenCase,
            Operation::ReplyCase,
            Operation::AssignCase,
            Operation::ResolveCase,
            Operation::RegisterCaseKeys,
            Operation::DiagnoseKey,
            Operation::IssueTemporaryKey,
        ];
        for op in writes {
            assert!(authorize(&[Role::Auditor], op).is_err(), "{op:?}");
        }
    }

    #[test]
    fn a_manager_only_acts_on_lots_keys_and_requests() {
        for op in Operation::ALL {
            let ok = authorize(&[Role::Manager], op).is_ok();
            let expected = matches!(
                op,
                Operation::WhoAmI
                    | Operation::ListLots
                    | Operation::ShowLot
                    | Operation::ShowKey
                    | Operation::MoveKeys
                    | Operation::OrderKeys
                    | Operation::CloseOrder
                    | Operation::ReserveKeys
                    | Operation::KeyAction
                    | Operation::HandOverKey
                    | Operation::ReturnKey
                    | Operation::ConfirmHandOver
                    | Operation::ListMyKeys
                    | Operation::KeyReceipt
                    | Operation::ShowDirectory
                    | Operation::OpenCase
                    | Operation::ListCases
                    | Operation::ShowCase
                    | Operation::GetCaseAttachment
                    | Operation::ReplyCase
                    | Operation::FileRequest
                    | Operation::ListRequests
                    | Operation::ShowRequest
                    | Operation::DecideRequest
                    | Operation::CancelRequest
                    | Operation::SignCharter
                    | Operation::SetRequestPin
                    | Operation::BookPickup
                    | Operation::OfferPickupSlot
                    | Operation::ListPickupSlots
                    | Operation::EnrolSoftwareKey
                    | Operation::GetRequestAttachment
                    | Operation::GetCharter
            );
            assert_eq!(ok, expected, "{op:?}");
        }
    }

    #[test]
    fn a_portal_reaches_the_lifecycle_requests_and_directory_reads_only() {
        for op in Operation::ALL {
            let ok = authorize(&[Role::Portal], op).is_ok();
            let expected = matches!(
                op,
                Operation::WhoAmI
                    | Operation::ListLots
                    | Operation::ShowLot
                    | Operation::ShowKey
                    | Operation::RegisterKeys
                    | Operation::FoundKey
                    | Operation::MoveKeys
                    | Operation::OrderKeys
                    | Operation::CloseOrder
                    | Operation::ReserveKeys
                    | Operation::KeyAction
                    | Operation::HandOverKey
                    | Operation::ReturnKey
                    | Operation::ConfirmHandOver
                    | Operation::ListMyKeys
                    | Operation::ChangeHolderPin
                    | Operation::KeyReceipt
                    | Operation::ShowDirectory
                    | Operation::OpenCase
                    | Operation::ListCases
                    | Operation::ShowCase
                    | Operation::GetCaseAttachment
                    | Operation::ReplyCase
                    | Operation::AssignCase
                    | Operation::ResolveCase
                    | Operation::FileRequest
                    | Operation::ListRequests
                    | Operation::ShowRequest
                    | Operation::DecideRequest
                    | Operation::CancelRequest
                    | Operation::SignCharter
                    | Operation::SetRequestPin
                    | Operation::BookPickup
                    | Operation::OfferPickupSlot
                    | Operation::ListPickupSlots
                    | Operation::EnrolSoftwareKey
                    | Operation::UnlockToken
                    | Operation::ResyncToken
                    | Operation::GetRequestAttachment
                    | Operation::GetCharter
            );
            assert_eq!(ok, expected, "{op:?}");
        }
    }

    #[test]
    fn roles_parse_by_name_only() {
        for r in Role::ALL {
            assert_eq!(r.name().parse::<Role>(), Ok(r));
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("root".parse::<Role>().is_err());
    }
}

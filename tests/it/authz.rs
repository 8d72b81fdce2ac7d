//! Every RPC with every role, with no credential and with a wrong one: allowed or denied exactly
//! as the table below says. The table is written out here, independently of the server's.

use okey_e2e::{Client, Server};
use okey_server::proto;
use tonic::Code;

const ROLES: [&str; 7] = [
    "verifier",
    "technician",
    "support",
    "admin",
    "auditor",
    "manager",
    "portal",
];

/// (RPC, roles allowed). Requests are empty, so an allowed call fails validation instead of
/// changing anything; a denied one must fail before validation.
const TABLE: &[(&str, &[&str])] = &[
    ("Verify", &["verifier", "support", "technician", "admin"]),
    ("TriggerChallenge", &["verifier", "admin"]),
    ("CreateToken", &["admin", "technician"]),
    ("ImportTokens", &["admin"]),
    ("ImportSeedFile", &["admin"]),
    ("ExportStock", &["admin"]),
    ("GetToken", &["admin", "support", "technician", "auditor"]),
    ("ListTokens", &["admin", "support", "technician", "auditor"]),
    ("AssignToken", &["admin", "support"]),
    ("SetPin", &["admin", "support"]),
    ("ResyncToken", &["admin", "support", "technician", "portal"]),
    ("UnlockToken", &["admin", "support", "portal"]),
    ("EnableToken", &["admin", "support"]),
    ("DisableToken", &["admin", "support"]),
    ("RevokeToken", &["admin"]),
    ("BeginInitialisation", &["technician", "admin"]),
    ("CompleteInitialisation", &["technician", "admin"]),
    ("AbortInitialisation", &["technician", "admin"]),
    ("VerifyAuditChain", &["auditor", "admin"]),
    ("ListAudit", &["auditor", "admin"]),
    ("GetAuditPublicKey", &["auditor", "admin"]),
    ("RotateMasterKey", &["admin"]),
    ("CreateApiKey", &["admin"]),
    ("ListApiKeys", &["admin"]),
    ("RevokeApiKey", &["admin"]),
    (
        "WhoAmI",
        &[
            "verifier",
            "technician",
            "support",
            "admin",
            "auditor",
            "manager",
            "portal",
        ],
    ),
    ("CreateLot", &["admin"]),
    ("SetLotDelegate", &["admin"]),
    (
        "ListLots",
        &["admin", "support", "auditor", "manager", "portal"],
    ),
    (
        "ShowLot",
        &["admin", "support", "auditor", "manager", "portal"],
    ),
    (
        "ShowKey",
        &["admin", "support", "auditor", "manager", "portal"],
    ),
    ("RegisterKeys", &["admin", "support", "portal"]),
    ("FoundKey", &["admin", "support", "portal"]),
    ("MoveKeys", &["admin", "support", "manager", "portal"]),
    ("OrderKeys", &["admin", "support", "manager", "portal"]),
    ("CloseOrder", &["admin", "support", "manager", "portal"]),
    ("ReserveKeys", &["admin", "support", "manager", "portal"]),
    ("ChangeKey", &["admin", "support", "manager", "portal"]),
    ("HandOver", &["admin", "support", "manager", "portal"]),
    ("ReturnKey", &["admin", "support", "manager", "portal"]),
    (
        "ConfirmHandOver",
        &["admin", "support", "manager", "portal"],
    ),
    ("ChangeHolderPin", &["portal"]),
    ("ListMyKeys", &["manager", "portal"]),
    ("GetReceipt", &["admin", "support", "manager", "portal"]),
    ("GetReceiptPdf", &["admin", "support", "manager", "portal"]),
    ("RunScheduledJobs", &["admin"]),
    ("SendTestMail", &["admin"]),
    ("ListMailQueue", &["admin", "support"]),
    ("ImportDirectory", &["admin"]),
    (
        "ShowDirectoryEntry",
        &["admin", "support", "auditor", "manager", "portal"],
    ),
    ("FileRequest", &["admin", "support", "manager", "portal"]),
    (
        "AttachToRequest",
        &["admin", "support", "manager", "portal"],
    ),
    ("SubmitRequest", &["admin", "support", "manager", "portal"]),
    ("ListRequests", &["admin", "support", "manager", "portal"]),
    ("ShowRequest", &["admin", "support", "manager", "portal"]),
    ("DecideRequest", &["admin", "support", "manager", "portal"]),
    ("CancelRequest", &["admin", "support", "manager", "portal"]),
    ("SignCharter", &["admin", "support", "manager", "portal"]),
    ("SetRequestPin", &["admin", "support", "manager", "portal"]),
    ("BookPickup", &["admin", "support", "manager", "portal"]),
    (
        "OfferPickupSlot",
        &["admin", "support", "manager", "portal"],
    ),
    (
        "ListPickupSlots",
        &["admin", "support", "manager", "portal"],
    ),
    (
        "EnrolSoftwareKey",
        &["admin", "support", "manager", "portal"],
    ),
    ("PublishCharter", &["admin"]),
    ("OpenCase", &["admin", "support", "manager", "portal"]),
    (
        "ListCases",
        &["admin", "support", "auditor", "manager", "portal"],
    ),
    (
        "ShowCase",
        &["admin", "support", "auditor", "manager", "portal"],
    ),
    ("ReplyCase", &["admin", "support", "manager", "portal"]),
    ("AssignCase", &["admin", "support", "portal"]),
    ("ResolveCase", &["admin", "support", "portal"]),
    ("RegisterCaseKeys", &["admin", "support"]),
    ("DiagnoseKey", &["admin", "support"]),
    ("IssueTemporaryKey", &["admin", "support"]),
    (
        "GetRequestAttachment",
        &["admin", "support", "manager", "portal"],
    ),
    (
        "GetCaseAttachment",
        &["admin", "support", "auditor", "manager", "portal"],
    ),
    ("GetCharter", &["admin", "support", "manager", "portal"]),
];

async fn call(c: &mut Client, rpc: &str) -> Code {
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let tr = proto::TokenRef::default();
    match rpc {
        "Verify" => code(
            c.auth
                .verify(proto::VerifyRequest::default())
                .await
                .map(drop),
        ),
        "TriggerChallenge" => code(
            c.auth
                .trigger_challenge(proto::TriggerChallengeRequest::default())
                .await
                .map(drop),
        ),
        "CreateToken" => code(
            c.tokens
                .create_token(proto::CreateTokenRequest {
                    serial: "not a serial".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        "ImportTokens" => code(
            c.tokens
                .import_tokens(proto::ImportTokensRequest::default())
                .await
                .map(drop),
        ),
        "ImportSeedFile" => {
            // A stream whose first message lacks the options: refused after authorisation.
            let chunks = tokio_stream::iter(vec![proto::SeedFileChunk::default()]);
            code(c.tokens.import_seed_file(chunks).await.map(drop))
        }
        "ExportStock" => code(
            c.tokens
                .export_stock(proto::ExportStockRequest::default())
                .await
                .map(drop),
        ),
        "GetToken" => code(
            c.tokens
                .get_token(proto::GetTokenRequest::default())
                .await
                .map(drop),
        ),
        "ListTokens" => code(
            c.tokens
                .list_tokens(proto::ListTokensRequest {
                    page_size: 100_000,
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        "AssignToken" => code(
            c.tokens
                .assign_token(proto::AssignTokenRequest::default())
                .await
                .map(drop),
        ),
        "SetPin" => code(
            c.tokens
                .set_pin(proto::SetPinRequest::default())
                .await
                .map(drop),
        ),
        "ResyncToken" => code(
            c.tokens
                .resync_token(proto::ResyncTokenRequest::default())
                .await
                .map(drop),
        ),
        "UnlockToken" => code(c.tokens.unlock_token(tr).await.map(drop)),
        "EnableToken" => code(c.tokens.enable_token(tr).await.map(drop)),
        "DisableToken" => code(c.tokens.disable_token(tr).await.map(drop)),
        "RevokeToken" => code(c.tokens.revoke_token(tr).await.map(drop)),
        "BeginInitialisation" => code(
            c.tokens
                .begin_initialisation(proto::BeginInitialisationRequest::default())
                .await
                .map(drop),
        ),
        "CompleteInitialisation" => code(
            c.tokens
                .complete_initialisation(proto::CompleteInitialisationRequest::default())
                .await
                .map(drop),
        ),
        "AbortInitialisation" => code(c.tokens.abort_initialisation(tr).await.map(drop)),
        "VerifyAuditChain" => code(
            c.audit
                .verify_audit_chain(proto::VerifyAuditChainRequest::default())
                .await
                .map(drop),
        ),
        "ListAudit" => code(
            c.audit
                .list_audit(proto::ListAuditRequest { limit: 100_000 })
                .await
                .map(drop),
        ),
        "CreateApiKey" => code(
            c.callers
                .create_api_key(proto::CreateApiKeyRequest::default())
                .await
                .map(drop),
        ),
        "ListApiKeys" => code(
            c.callers
                .list_api_keys(proto::ListApiKeysRequest {})
                .await
                .map(drop),
        ),
        "RevokeApiKey" => code(
            c.callers
                .revoke_api_key(proto::RevokeApiKeyRequest::default())
                .await
                .map(drop),
        ),
        "WhoAmI" => code(c.callers.who_am_i(proto::WhoAmIRequest {}).await.map(drop)),
        "RotateMasterKey" => code(
            c.tokens
                .rotate_master_key(proto::RotateMasterKeyRequest::default())
                .await
                .map(drop),
        ),
        "GetAuditPublicKey" => code(
            c.audit
                .get_audit_public_key(proto::GetAuditPublicKeyRequest {})
                .await
                .map(drop),
        ),
        "CreateLot" => code(
            c.lifecycle
                .create_lot(proto::CreateLotRequest::default())
                .await
                .map(drop),
        ),
        "SetLotDelegate" => code(
            c.lifecycle
                .set_lot_delegate(proto::SetLotDelegateRequest::default())
                .await
                .map(drop),
        ),
        "ListLots" => code(
            c.lifecycle
                .list_lots(proto::ListLotsRequest {})
                .await
                .map(drop),
        ),
        "ShowLot" => code(
            c.lifecycle
                .show_lot(proto::LotRef::default())
                .await
                .map(drop),
        ),
        "ShowKey" => code(
            c.lifecycle
                .show_key(proto::KeyRef::default())
                .await
                .map(drop),
        ),
        "RegisterKeys" => code(
            c.lifecycle
                .register_keys(proto::RegisterKeysRequest::default())
                .await
                .map(drop),
        ),
        "FoundKey" => code(
            c.lifecycle
                .found_key(proto::KeyRef::default())
                .await
                .map(drop),
        ),
        "MoveKeys" => code(
            c.lifecycle
                .move_keys(proto::MoveKeysRequest::default())
                .await
                .map(drop),
        ),
        "OrderKeys" => code(
            c.lifecycle
                .order_keys(proto::OrderKeysRequest::default())
                .await
                .map(drop),
        ),
        "CloseOrder" => code(
            c.lifecycle
                .close_order(proto::CloseOrderRequest::default())
                .await
                .map(drop),
        ),
        "ReserveKeys" => code(
            c.lifecycle
                .reserve_keys(proto::ReserveKeysRequest::default())
                .await
                .map(drop),
        ),
        "ChangeKey" => code(
            c.lifecycle
                .change_key(proto::ChangeKeyRequest::default())
                .await
                .map(drop),
        ),
        "HandOver" => code(
            c.lifecycle
                .hand_over(proto::HandOverRequest::default())
                .await
                .map(drop),
        ),
        "ReturnKey" => code(
            c.lifecycle
                .return_key(proto::ReturnKeyRequest::default())
                .await
                .map(drop),
        ),
        "ConfirmHandOver" => code(
            c.lifecycle
                .confirm_hand_over(proto::ConfirmHandOverRequest::default())
                .await
                .map(drop),
        ),
        "ListMyKeys" => code(
            c.lifecycle
                .list_my_keys(proto::ListMyKeysRequest::default())
                .await
                .map(drop),
        ),
        "ChangeHolderPin" => code(
            c.lifecycle
                .change_holder_pin(proto::ChangeHolderPinRequest::default())
                .await
                .map(drop),
        ),
        "GetReceipt" => code(
            c.lifecycle
                .get_receipt(proto::GetReceiptRequest::default())
                .await
                .map(drop),
        ),
        "GetReceiptPdf" => code(
            c.lifecycle
                .get_receipt_pdf(proto::GetReceiptRequest::default())
                .await
                .map(drop),
        ),
        "RunScheduledJobs" => code(
            c.lifecycle
                .run_scheduled_jobs(proto::RunScheduledJobsRequest {})
                .await
                .map(drop),
        ),
        "SendTestMail" => code(
            c.mail
                .send_test_mail(proto::SendTestMailRequest::default())
                .await
                .map(drop),
        ),
        "ListMailQueue" => code(
            c.mail
                .list_mail_queue(proto::ListMailQueueRequest {
                    limit: 100_000,
                    include_sent: false,
                })
                .await
                .map(drop),
        ),
        "ImportDirectory" => code(
            c.directory
                .import_directory(tokio_stream::iter(Vec::<proto::DirectoryChunk>::new()))
                .await
                .map(drop),
        ),
        "ShowDirectoryEntry" => code(
            c.directory
                .show_directory_entry(proto::DirectoryRef::default())
                .await
                .map(drop),
        ),
        "FileRequest" => code(
            c.requests
                .file_request(proto::FileRequestRequest::default())
                .await
                .map(drop),
        ),
        "AttachToRequest" => code(
            c.requests
                .attach_to_request(proto::AttachToRequestRequest::default())
                .await
                .map(drop),
        ),
        "SubmitRequest" => code(
            c.requests
                .submit_request(proto::SubmitRequestRequest::default())
                .await
                .map(drop),
        ),
        "ListRequests" => code(
            c.requests
                .list_requests(proto::ListRequestsRequest::default())
                .await
                .map(drop),
        ),
        "ShowRequest" => code(
            c.requests
                .show_request(proto::RequestRef::default())
                .await
                .map(drop),
        ),
        "DecideRequest" => code(
            c.requests
                .decide_request(proto::DecideRequestRequest::default())
                .await
                .map(drop),
        ),
        "CancelRequest" => code(
            c.requests
                .cancel_request(proto::RequestRef::default())
                .await
                .map(drop),
        ),
        "SignCharter" => code(
            c.requests
                .sign_charter(proto::SignCharterRequest::default())
                .await
                .map(drop),
        ),
        "SetRequestPin" => code(
            c.requests
                .set_request_pin(proto::SetRequestPinRequest::default())
                .await
                .map(drop),
        ),
        "BookPickup" => code(
            c.requests
                .book_pickup(proto::BookPickupRequest::default())
                .await
                .map(drop),
        ),
        "OfferPickupSlot" => code(
            c.requests
                .offer_pickup_slot(proto::OfferPickupSlotRequest::default())
                .await
                .map(drop),
        ),
        "ListPickupSlots" => code(
            c.requests
                .list_pickup_slots(proto::ListPickupSlotsRequest::default())
                .await
                .map(drop),
        ),
        "EnrolSoftwareKey" => code(
            c.requests
                .enrol_software_key(proto::EnrolSoftwareKeyRequest::default())
                .await
                .map(drop),
        ),
        "PublishCharter" => code(
            c.requests
                .publish_charter(proto::PublishCharterRequest::default())
                .await
                .map(drop),
        ),
        "OpenCase" => code(
            c.support
                .open_case(proto::OpenCaseRequest::default())
                .await
                .map(drop),
        ),
        "ListCases" => code(
            c.support
                .list_cases(proto::ListCasesRequest::default())
                .await
                .map(drop),
        ),
        "ShowCase" => code(
            c.support
                .show_case(proto::ShowCaseRequest::default())
                .await
                .map(drop),
        ),
        "ReplyCase" => code(
            c.support
                .reply_case(proto::ReplyCaseRequest::default())
                .await
                .map(drop),
        ),
        "AssignCase" => code(
            c.support
                .assign_case(proto::AssignCaseRequest::default())
                .await
                .map(drop),
        ),
        "ResolveCase" => code(
            c.support
                .resolve_case(proto::ResolveCaseRequest::default())
                .await
                .map(drop),
        ),
        "RegisterCaseKeys" => code(
            c.support
                .register_case_keys(proto::RegisterCaseKeysRequest::default())
                .await
                .map(drop),
        ),
        "DiagnoseKey" => code(
            c.support
                .diagnose_key(proto::DiagnoseKeyRequest::default())
                .await
                .map(drop),
        ),
        "IssueTemporaryKey" => code(
            c.support
                .issue_temporary_key(proto::IssueTemporaryKeyRequest::default())
                .await
                .map(drop),
        ),
        "GetRequestAttachment" => code(
            c.requests
                .get_request_attachment(proto::GetRequestAttachmentRequest::default())
                .await
                .map(drop),
        ),
        "GetCaseAttachment" => code(
            c.support
                .get_case_attachment(proto::GetCaseAttachmentRequest::default())
                .await
                .map(drop),
        ),
        "GetCharter" => code(
            c.requests
                .get_charter(proto::GetCharterRequest {})
                .await
                .map(drop),
        ),
        other => panic!("no call for {other}"),
    }
}

#[tokio::test]
async fn every_rpc_with_every_role() {
    let server = Server::start();
    let mut admin = server.admin().await;
    // The portal acts for a directory person in every request (a member of staff, who may do
    // nothing in the lifecycle: an empty request then fails validation, not authorisation).
    server.import_directory(
        "id,kind,name,parent,under_contract\nRECTORAT,rectorat,Rectorat,,\n",
        "id,name,email,unit,functions\np.staff,Pat Staff,p.staff@ac-example.fr,RECTORAT,staff\n",
    );
    let mut clients = Vec::new();
    for role in ROLES {
        let client = if role == "portal" {
            let key = server.key_with_role("as-portal", "portal").await;
            server.client_acting(&key, "p.staff").await
        } else {
            server.client_as(role).await
        };
        clients.push((role, client));
    }
    let mut nobody = server.client(None).await;
    let mut forged = server
        .client(Some("okey_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .await;
    let mut malformed = server.client(Some("not-an-okey-key")).await;

    let mut failures = Vec::new();
    for (rpc, allowed) in TABLE {
        for (role, client) in clients.iter_mut() {
            let got = call(client, rpc).await;
            let denied = matches!(got, Code::PermissionDenied | Code::Unauthenticated);
            let should_allow = allowed.contains(role);
            if denied == should_allow {
                failures.push(format!(
                    "{rpc} as {role}: got {got:?}, expected {}",
                    if should_allow { "allowed" } else { "denied" }
                ));
            }
            if !should_allow && got != Code::PermissionDenied {
                failures.push(format!(
                    "{rpc} as {role}: denial must be PERMISSION_DENIED, got {got:?}"
                ));
            }
        }
        for (who, client) in [
            ("no credential", &mut nobody),
            ("forged key", &mut forged),
            ("malformed key", &mut malformed),
        ] {
            let got = call(client, rpc).await;
            if got != Code::Unauthenticated {
                failures.push(format!(
                    "{rpc} with {who}: got {got:?}, expected Unauthenticated"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A revoked key stops working at once.
    admin
        .callers
        .revoke_api_key(proto::RevokeApiKeyRequest {
            name: "as-support".into(),
        })
        .await
        .expect("revoke");
    let (_, support) = clients
        .iter_mut()
        .find(|(r, _)| *r == "support")
        .expect("support client");
    assert_eq!(call(support, "WhoAmI").await, Code::Unauthenticated);
}

/// Creating a token for a holder also assigns it: a technician (who may create tokens but not
/// assign them) cannot mint a working credential for someone it names, and nothing is created.
#[tokio::test]
async fn a_token_created_for_a_holder_needs_the_right_to_assign() {
    let server = Server::start();
    let mut admin = server.admin().await;
    let mut tech = server.client_as("technician").await;
    let create = |serial: &str, holder: &str| proto::CreateTokenRequest {
        serial: serial.into(),
        kind: proto::TokenKind::Software as i32,
        holder: holder.into(),
        ..Default::default()
    };
    let err = tech
        .tokens
        .create_token(create("SW-1", "ceo"))
        .await
        .expect_err("a technician cannot assign");
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let serials = admin.serials().await;
    assert!(serials.is_empty(), "nothing created: {serials:?}");
    // Unassigned, it may create; the admin may create for a holder.
    tech.tokens
        .create_token(create("SW-2", ""))
        .await
        .expect("an unassigned token");
    let t = admin
        .tokens
        .create_token(create("SW-3", "ceo"))
        .await
        .expect("the admin assigns")
        .into_inner()
        .token
        .expect("token");
    assert_eq!(t.holder, "ceo");
}

/// Log lines of `log` at WARN that contain `text`.
fn warnings<'a>(log: &'a str, text: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains(" WARN ") && l.contains(text))
        .collect()
}

#[tokio::test]
async fn refused_credentials_are_logged_counted_and_denials_audited() {
    let (server, metrics) = okey_e2e::logging_with_metrics();
    let mut nobody = server.client(None).await;
    let mut stranger = server
        .client(Some("okey_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .await;
    for c in [&mut nobody, &mut stranger] {
        assert_eq!(call(c, "ListTokens").await, Code::Unauthenticated);
    }
    let mut verifier = server.client_as("verifier").await;
    assert_eq!(
        call(&mut verifier, "ListTokens").await,
        Code::PermissionDenied
    );

    let log = server.log();
    let refused = warnings(&log, "credential refused");
    assert_eq!(refused.len(), 2, "{log}");
    for line in &refused {
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
        assert!(line.contains("ListTokens"), "{line}");
    }
    assert!(refused[0].contains("no authorization header"), "{log}");
    assert!(refused[1].contains("unknown or revoked API key"), "{log}");
    let denied = warnings(&log, "permission denied");
    assert_eq!(denied.len(), 1, "{log}");
    assert!(denied[0].contains("caller=as-verifier"), "{log}");
    assert!(denied[0].contains("peer=127.0.0.1:"), "{log}");

    let body = okey_e2e::scrape(metrics);
    let count = |code: &str| {
        okey_e2e::sample(
            &body,
            &format!("okey_refused_calls_total{{code=\"{code}\"}}"),
        )
    };
    assert_eq!(count("unauthenticated"), 2);
    assert_eq!(count("permission_denied"), 1);

    // The denial is on the audit chain, naming the principal and the operation.
    let mut admin = server.admin().await;
    let records = admin.audit_records(10).await;
    let record = records
        .iter()
        .find(|r| r.action == "authorize")
        .expect("an audit record of the denial");
    assert_eq!(
        (
            record.actor.as_str(),
            record.subject.as_str(),
            record.result.as_str()
        ),
        ("as-verifier", "ListTokens", "rejected")
    );
    assert_eq!(record.reason, "permission_denied");
    assert_eq!(
        records.iter().filter(|r| r.action == "authorize").count(),
        1
    );

    // A flood is counted in full but logged at a bounded rate.
    for _ in 0..200 {
        assert_eq!(call(&mut nobody, "ListTokens").await, Code::Unauthenticated);
    }
    let body = okey_e2e::scrape(metrics);
    assert_eq!(
        okey_e2e::sample(&body, "okey_refused_calls_total{code=\"unauthenticated\"}"),
        202
    );
    let logged = warnings(&server.log(), "credential refused").len();
    assert!(
        (3..202).contains(&logged),
        "{logged} lines for 202 refusals"
    );
}

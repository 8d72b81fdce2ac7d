//! The request service: key requests, charters and pickup slots (`proto/okey/v1/requests.proto`).
//!
//! Each handler checks the caller's role for the RPC (deny by default), resolves the acting
//! person exactly as the lifecycle does, decodes the request into the store's checked types and
//! lets the store decide as the request's party (requester, validator, N+2, lot manager,
//! support centre). The PIN is taken into a zeroized [`okey_store::Pin`] at once and never
//! logged or returned.

use std::sync::Arc;

use okey_domain::Operation;
use okey_domain::request::{Need, RequestedKey};
use okey_store::{NewAttachment, NewRequest, Pin, RequestView};
use tonic::{Request, Response, Status};

use crate::clock;
use crate::proto;
use crate::service::Okey;
use crate::service::actor_of;
use crate::status::store_status;

fn attachments(list: Vec<proto::RequestAttachment>) -> Vec<NewAttachment> {
    list.into_iter()
        .map(|a| NewAttachment {
            name: a.name,
            declared: Some(a.media_type).filter(|m| !m.is_empty()),
            content: a.content,
        })
        .collect()
}

fn slot_to_proto(s: &okey_store::PickupSlot) -> proto::PickupSlot {
    proto::PickupSlot {
        id: s.id,
        lot: s.lot.clone(),
        starts_at: s.starts_at,
        place: s.place.clone(),
        request: s.request.unwrap_or(0),
    }
}

fn row_to_proto(r: &okey_store::RequestRow) -> proto::KeyRequest {
    proto::KeyRequest {
        id: r.id,
        requester: r.requester.clone(),
        unit: r.unit.clone(),
        need: r.need.clone(),
        key_type: r.key_type.clone(),
        reason: r.reason.clone(),
        state: r.state.clone(),
        validator: r.validator.clone().unwrap_or_default(),
        second_validator: r.second_validator.clone().unwrap_or_default(),
        decided_by: r.decided_by.clone().unwrap_or_default(),
        decision_reason: r.decision_reason.clone().unwrap_or_default(),
        lot: r.lot.clone().unwrap_or_default(),
        serial: r.serial.clone().unwrap_or_default(),
        charter_version: r.charter_version.unwrap_or(0),
        charter_signed_at: r.charter_signed_at.unwrap_or(0),
        pin_set: r.pin_verifier.is_some(),
        pin_source: r.pin_source.clone().unwrap_or_default(),
        slot: r.slot.unwrap_or(0),
        created_at: r.created_at,
        submitted_at: r.submitted_at.unwrap_or(0),
    }
}

fn detail(v: RequestView) -> Response<proto::RequestDetail> {
    Response::new(proto::RequestDetail {
        request: Some(row_to_proto(&v.row)),
        attachments: v
            .attachments
            .iter()
            .map(|a| proto::AttachmentInfo {
                id: a.id,
                name: a.name.clone(),
                media_type: a.media_type.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
            })
            .collect(),
        events: v
            .events
            .iter()
            .map(|e| proto::RequestEvent {
                at: e.at,
                actor: e.actor.clone(),
                action: e.action.clone(),
                state_before: e.state_before.clone().unwrap_or_default(),
                state_after: e.state_after.clone(),
                comment: e.comment.clone().unwrap_or_default(),
            })
            .collect(),
        slot: v.slot.as_ref().map(slot_to_proto),
    })
}

fn opt(s: String) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

#[tonic::async_trait]
impl proto::request_service_server::RequestService for Arc<Okey> {
    #[tracing::instrument(skip_all, fields(op = "FileRequest"))]
    async fn file_request(
        &self,
        request: Request<proto::FileRequestRequest>,
    ) -> Result<Response<proto::RequestDetail>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::FileRequest)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let key = match r.key_type.as_str() {
            "hardware" => RequestedKey::Hardware,
            "software" => RequestedKey::Software,
            _ => {
                return Err(Status::invalid_argument(
                    "key_type must be hardware or software",
                ));
            }
        };
        let need = match r.need.as_str() {
            "" | "new" => Need::NewKey,
            "renewal" => Need::Renewal,
            _ => return Err(Status::invalid_argument("need must be new or renewal")),
        };
        let new = NewRequest {
            need,
            key,
            reason: r.reason,
            validator: opt(r.validator),
            attachments: attachments(r.attachments),
            submit: r.submit,
        };
        let v = self
            .store
            .file_request(new, &acting, clock::now())
            .map_err(store_status)?;
        Ok(detail(v))
    }

    #[tracing::instrument(skip_all, fields(op = "AttachToRequest"))]
    async fn attach_to_request(
        &self,
        request: Request<proto::AttachToRequestRequest>,
    ) -> Result<Response<proto::RequestDetail>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::FileRequest)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let v = self
            .store
            .attach_to_request(r.id, attachments(r.attachments), &acting, clock::now())
            .map_err(store_status)?;
        Ok(detail(v))
    }

    #[tracing::instrument(skip_all, fields(op = "SubmitRequest"))]
    async fn submit_request(
        &self,
        request: Request<proto::SubmitRequestRequest>,
    ) -> Result<Response<proto::RequestDetail>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::FileRequest)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let v = self
            .store
            .submit_request(r.id, opt(r.validator), &acting, clock::now())
            .map_err(store_status)?;
        Ok(detail(v))
    }

    #[tracing::instrument(skip_all, fields(op = "ListRequests"))]
    async fn list_requests(
        &self,
        request: Request<proto::ListRequestsRequest>,
    ) -> Result<Response<proto::ListRequestsResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ListRequests)
            .await?;
        let acting = self.acting(&p)?;
        let rows = self
            .store
            .list_requests(&acting, request.into_inner().waiting_for_me)
            .map_err(store_status)?;
        Ok(Response::new(proto::ListRequestsResponse {
            requests: rows.iter().map(row_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "ShowRequest"))]
    async fn show_request(
        &self,
        request: Request<proto::RequestRef>,
    ) -> Result<Response<proto::RequestDetail>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ShowRequest)
            .await?;
        let acting = self.acting(&p)?;
        let v = self
            .store
            .request_view(request.into_inner().id, Some(&acting))
            .map_err(store_status)?;
        Ok(detail(v))
    }

    #[tracing::instrument(skip_all, fields(op = "DecideRequest"))]
    async fn decide_request(
        &self,
        request: Request<proto::DecideRequestRequest>,
    ) -> Result<Response<proto::RequestDetail>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::DecideRequest)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let v = self
            .store
            .decide_request(r.id, r.approve, opt(r.reason), &acting, clock::now())
            .map_err(store_status)?;
        Ok(detail(v))
    }

    #[tracing::instrument(skip_all, fields(op = "CancelRequest"))]
    async fn cancel_request(
        &self,
        request: Request<proto::RequestRef>,
    ) -> Result<Response<proto::RequestDetail>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::CancelRequest)
            .await?;
        let acting = self.acting(&p)?;
        let v = self
            .store
            .cancel_request(request.into_inner().id, &acting, clock::now())
            .map_err(store_status)?;
        Ok(detail(v))
    }

    #[tracing::instrument(skip_all, fields(op = "SignCharter"))]
    async fn sign_charter(
        &self,
        request: Request<proto::SignCharterRequest>,
    ) -> Result<Response<proto::RequestDetail>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::SignCharter)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let v = self
            .store
            .sign_charter(r.id, &r.number, r.accept, &acting, clock::now())
            .map_err(store_status)?;
        Ok(detail(v))
    }

    #[tracing::instrument(skip_all, fields(op = "SetRequestPin"))]
    async fn set_request_pin(
        &self,
        request: Request<proto::SetRequestPinRequest>,
    ) -> Result<Response<proto::RequestDetail>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::SetRequestPin)
            .await?;
        let acting = self.acting(&p)?;
        let mut r = request.into_inner();
        let pin = Pin::new(&r.pin);
        zeroize::Zeroize::zeroize(&mut r.pin);
        let pin = pin.map_err(|e| Status::invalid_argument(format!("pin: {e}")))?;
        let v = self
            .store
            .set_request_pin(
                r.id,
                &pin,
                &self.requests.pin_policy(),
                &acting,
                clock::now(),
            )
            .map_err(store_status)?;
        Ok(detail(v))
    }

    #[tracing::instrument(skip_all, fields(op = "BookPickup"))]
    async fn book_pickup(
        &self,
        request: Request<proto::BookPickupRequest>,
    ) -> Result<Response<proto::RequestDetail>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::BookPickup)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let v = self
            .store
            .book_slot(r.id, r.slot, &acting, clock::now())
            .map_err(store_status)?;
        Ok(detail(v))
    }

    #[tracing::instrument(skip_all, fields(op = "OfferPickupSlot"))]
    async fn offer_pickup_slot(
        &self,
        request: Request<proto::OfferPickupSlotRequest>,
    ) -> Result<Response<proto::PickupSlot>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::OfferPickupSlot)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let s = self
            .store
            .offer_slot(&r.lot, r.starts_at, &r.place, &acting, clock::now())
            .map_err(store_status)?;
        Ok(Response::new(slot_to_proto(&s)))
    }

    #[tracing::instrument(skip_all, fields(op = "ListPickupSlots"))]
    async fn list_pickup_slots(
        &self,
        request: Request<proto::ListPickupSlotsRequest>,
    ) -> Result<Response<proto::ListPickupSlotsResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::ListPickupSlots)
            .await?;
        let acting = self.acting(&p)?;
        let lot = opt(request.into_inner().lot);
        let slots = self
            .store
            .visible_slots(&acting, lot.as_deref(), clock::now())
            .map_err(store_status)?;
        Ok(Response::new(proto::ListPickupSlotsResponse {
            slots: slots.iter().map(slot_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "EnrolSoftwareKey"))]
    async fn enrol_software_key(
        &self,
        request: Request<proto::EnrolSoftwareKeyRequest>,
    ) -> Result<Response<proto::EnrolSoftwareKeyResponse>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::EnrolSoftwareKey)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        let instructions = match r.platform.as_str() {
            "android" => {
                "Android : installez depuis Google Play une application d'authentification                  (par exemple FreeOTP ou Google Authenticator), choisissez « Scanner un code QR »                  et scannez le code affiché, puis saisissez sur okey le premier code qu'elle donne."
            }
            "ios" => {
                "iOS (iPhone) : installez depuis l'App Store une application d'authentification                  (par exemple FreeOTP ou Google Authenticator), choisissez « Scanner un code QR »                  et scannez le code affiché, puis saisissez sur okey le premier code qu'elle donne."
            }
            _ => return Err(Status::invalid_argument("platform must be android or ios")),
        };
        let account = acting.person.clone().unwrap_or_default();
        let serial = crate::service::random_serial()?;
        let seed = crate::service::random_seed(okey_store::Algorithm::Sha1)?;
        let uri = okey_intake::KeyUri::builder(account, seed.clone())
            .issuer("okey".to_owned())
            .digits(6)
            .algorithm(okey_intake::HashAlgorithm::Sha1)
            .totp(30)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        let token = okey_store::NewToken {
            valid_until: None,
            serial,
            kind: okey_store::TokenKind::Software,
            otp: okey_store::OtpKind::Totp { step: 30, t0: 0 },
            algorithm: okey_store::Algorithm::Sha1,
            digits: 6,
            seed,
            counter: 0,
            drift: 0,
            status: okey_store::TokenStatus::Pending,
            holder: None,
            description: Some(format!("software key of request {}", r.id)),
        };
        let v = self
            .store
            .enrol_software(r.id, &r.platform, token, &acting, clock::now())
            .map_err(store_status)?;
        let text = uri.to_uri();
        Ok(Response::new(proto::EnrolSoftwareKeyResponse {
            detail: Some(detail(v).into_inner()),
            otpauth_uri: text.as_str().to_owned(),
            instructions: instructions.to_owned(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "PublishCharter"))]
    async fn publish_charter(
        &self,
        request: Request<proto::PublishCharterRequest>,
    ) -> Result<Response<proto::CharterInfo>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::PublishCharter)
            .await?;
        let r = request.into_inner();
        let c = self
            .store
            .publish_charter(&r.number, &r.title, r.content, &actor_of(&p), clock::now())
            .map_err(store_status)?;
        Ok(Response::new(proto::CharterInfo {
            version: c.version,
            number: c.number,
            title: c.title,
            sha256: hex::encode(c.sha256),
            published_at: c.published_at,
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "GetRequestAttachment"))]
    async fn get_request_attachment(
        &self,
        request: Request<proto::GetRequestAttachmentRequest>,
    ) -> Result<Response<proto::RequestAttachment>, Status> {
        let p = self
            .callers
            .authorize(&request, Operation::GetRequestAttachment)
            .await?;
        let acting = self.acting(&p)?;
        let r = request.into_inner();
        // The request's parties only, exactly as ShowRequest decides.
        let v = self
            .store
            .request_view(r.id, Some(&acting))
            .map_err(store_status)?;
        if !v.attachments.iter().any(|a| a.id == r.attachment) {
            return Err(Status::not_found(format!(
                "request {} has no attachment {}",
                r.id, r.attachment
            )));
        }
        let (info, content) = self
            .store
            .attachment_content(&v.row.owner(), r.attachment)
            .map_err(store_status)?;
        Ok(Response::new(proto::RequestAttachment {
            name: info.name,
            media_type: info.media_type,
            content: content.to_vec(),
        }))
    }

    #[tracing::instrument(skip_all, fields(op = "GetCharter"))]
    async fn get_charter(
        &self,
        request: Request<proto::GetCharterRequest>,
    ) -> Result<Response<proto::CharterDocument>, Status> {
        self.callers
            .authorize(&request, Operation::GetCharter)
            .await?;
        let c = self
            .store
            .current_charter()
            .map_err(store_status)?
            .ok_or_else(|| Status::failed_precondition("no charter is published yet"))?;
        Ok(Response::new(proto::CharterDocument {
            version: c.version,
            title: c.title,
            sha256: hex::encode(c.sha256),
            published_at: c.published_at,
            content: c.content,
        }))
    }
}

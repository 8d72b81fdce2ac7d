//! What a database must provide for key requests, charters, pickup slots and attachments,
//! beside [`crate::backend`]. Every method runs inside the writer's transaction, so a request's
//! state change, its history event, its mails (outbox) and its audit record commit together.
//! A request row changes only through [`RequestTx::update_request`]'s compare-and-set on its
//! `version`, like a token row.

use crate::StoreError;
use crate::attachments::AttachmentRow;
use crate::requests::{Charter, PickupSlot, RequestEvent, RequestRow};

/// The write side (reads of this workflow also go through the writer: they are rare and small).
pub trait RequestTx {
    /// Insert a request; its id.
    fn insert_request(&mut self, r: &RequestRow) -> Result<u64, StoreError>;
    /// Replace the request `r.id` if its version is still `expect`, bumping it; false otherwise.
    fn update_request(&mut self, expect: u64, r: &RequestRow) -> Result<bool, StoreError>;
    /// One request.
    fn request(&mut self, id: u64) -> Result<Option<RequestRow>, StoreError>;
    /// Requests a person filed or is named validator (N+1 or N+2) of, oldest first.
    fn requests_of_person(&mut self, person: &str) -> Result<Vec<RequestRow>, StoreError>;
    /// Requests in one state, oldest first.
    fn requests_in_state(&mut self, state: &str) -> Result<Vec<RequestRow>, StoreError>;
    /// Append to a request's history.
    fn insert_request_event(&mut self, e: &RequestEvent) -> Result<(), StoreError>;
    /// A request's history, oldest first.
    fn request_events(&mut self, id: u64) -> Result<Vec<RequestEvent>, StoreError>;
    /// Insert a charter version; [`StoreError::Precondition`] if the version exists.
    fn insert_charter(&mut self, c: &Charter) -> Result<(), StoreError>;
    /// The charter with the highest version.
    fn current_charter(&mut self) -> Result<Option<Charter>, StoreError>;
    /// Insert a pickup slot; its id.
    fn insert_slot(&mut self, s: &PickupSlot) -> Result<u64, StoreError>;
    /// One slot.
    fn slot(&mut self, id: u64) -> Result<Option<PickupSlot>, StoreError>;
    /// The slots of a lot, by time.
    fn slots(&mut self, lot: &str) -> Result<Vec<PickupSlot>, StoreError>;
    /// Book a free slot for a request; false if it is taken.
    fn book_slot(&mut self, id: u64, request: u64) -> Result<bool, StoreError>;
    /// Free the slot a request booked, if any (the request is closed without its pickup).
    fn free_slot_of(&mut self, request: u64) -> Result<(), StoreError>;
    /// Insert an attachment; its id.
    fn insert_attachment(&mut self, a: &AttachmentRow) -> Result<u64, StoreError>;
    /// The attachments of an owner (`request:7`), by id, with their sealed content.
    fn attachments(&mut self, owner: &str) -> Result<Vec<AttachmentRow>, StoreError>;
    /// Attachments sealed under another data key than `version` (for a rotation), up to `limit`.
    fn attachments_not_sealed_under(
        &mut self,
        version: u32,
        limit: u32,
    ) -> Result<Vec<AttachmentRow>, StoreError>;
    /// Replace an attachment's sealed content and key version.
    fn reseal_attachment(
        &mut self,
        id: u64,
        key_version: u32,
        sealed: &[u8],
    ) -> Result<(), StoreError>;
}

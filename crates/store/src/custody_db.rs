//! What a database must provide for lots and custody, beside [`crate::backend`].
//!
//! A key's custody *state*, validity end and deactivation time are columns of the token state
//! row, so they change only through [`crate::backend::WriteTx::update_token`]'s compare-and-set
//! and are read with the row a verify reads. Which lot a key is in, its origin lot, its history,
//! receipts and orders are in the tables below; they are written in the same transaction as the
//! compare-and-set that changes the key, so the two never disagree.

use crate::StoreError;
use crate::lots::{CustodyRow, KeyEvent, LotKey, LotRow, Order, OrderState, Receipt};

/// The read side.
pub trait CustodyRead: Send + Sync {
    /// The persons named as delegate managers of a lot.
    fn delegates(&self, lot: &str) -> Result<Vec<String>, StoreError>;
    /// The lots a person is a named delegate manager of.
    fn delegated_to(&self, person: &str) -> Result<Vec<String>, StoreError>;
    /// One lot.
    fn lot(&self, id: &str) -> Result<Option<LotRow>, StoreError>;
    /// Every lot, by id.
    fn lots(&self) -> Result<Vec<LotRow>, StoreError>;
    /// `(lot, state, count)` for every lot and state that has keys.
    fn lot_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError>;
    /// The keys of one lot, by serial.
    fn lot_keys(&self, lot: &str) -> Result<Vec<LotKey>, StoreError>;
    /// A key's lot and origin lot.
    fn custody(&self, serial: &str) -> Result<Option<CustodyRow>, StoreError>;
    /// A key's history, oldest first.
    fn history(&self, serial: &str) -> Result<Vec<KeyEvent>, StoreError>;
    /// A key's receipts, oldest first.
    fn receipts(&self, serial: &str) -> Result<Vec<Receipt>, StoreError>;
    /// Orders, of one lot or of all, oldest first.
    fn orders(&self, lot: Option<&str>) -> Result<Vec<Order>, StoreError>;
}

/// The write side, inside the writer's transaction.
pub trait CustodyTx {
    /// Name (or with `remove`, unname) a delegate manager of a lot.
    fn set_delegate(&mut self, lot: &str, person: &str, remove: bool) -> Result<(), StoreError>;
    /// Up to `limit` keys of a lot available for someone (delivered or returned), by serial.
    fn available_keys(&mut self, lot: &str, limit: u32) -> Result<Vec<String>, StoreError>;
    /// Insert a lot; [`StoreError::Precondition`] if the id exists.
    fn insert_lot(&mut self, lot: &LotRow) -> Result<(), StoreError>;
    /// One lot, as this transaction sees it.
    fn lot(&mut self, id: &str) -> Result<Option<LotRow>, StoreError>;
    /// A key's lot and origin lot.
    fn custody(&mut self, serial: &str) -> Result<Option<CustodyRow>, StoreError>;
    /// Insert or replace a key's lot row.
    fn put_custody(&mut self, row: &CustodyRow) -> Result<(), StoreError>;
    /// Append to a key's history.
    fn insert_event(&mut self, event: &KeyEvent) -> Result<(), StoreError>;
    /// Insert a receipt.
    fn insert_receipt(&mut self, receipt: &Receipt) -> Result<(), StoreError>;
    /// A key's receipts, oldest first, as this transaction sees them.
    fn receipts(&mut self, serial: &str) -> Result<Vec<Receipt>, StoreError>;
    /// One receipt by number.
    fn receipt(&mut self, number: &str) -> Result<Option<Receipt>, StoreError>;
    /// Mark a receipt signed, if it is not yet; false if it was (or does not exist).
    fn confirm_receipt(&mut self, number: &str, at: u64, how: &str) -> Result<bool, StoreError>;
    /// Mark the latest hand-over receipt of `serial` signed by the holder's first valid code,
    /// if it is not yet signed; false otherwise.
    fn confirm_latest_handover(&mut self, serial: &str, at: u64) -> Result<bool, StoreError>;
    /// Insert an order; its id.
    fn insert_order(&mut self, order: &Order) -> Result<u64, StoreError>;
    /// One order.
    fn order(&mut self, id: u64) -> Result<Option<Order>, StoreError>;
    /// Close an open order; false if it is not open.
    fn close_order(
        &mut self,
        id: u64,
        state: OrderState,
        by: &str,
        at: u64,
        serials: &[String],
    ) -> Result<bool, StoreError>;
    /// Up to `limit` keys with something due at `now`: a validity end passed while the key is
    /// not yet marked expired, or a deactivation time passed while a handed-over key's return
    /// is not yet due.
    fn due_keys(&mut self, now: u64, limit: u32) -> Result<Vec<String>, StoreError>;
}

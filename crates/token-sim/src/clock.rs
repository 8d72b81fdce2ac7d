//! Virtual time shared by the simulated devices and their transports: `pause` on a simulated
//! transport advances it, so busy polling and clock drift play out without real sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A shared virtual clock counting milliseconds since the bench was switched on.
#[derive(Debug, Clone, Default)]
pub struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    /// Starts at 0 ms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Milliseconds elapsed.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Lets `d` pass.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

//! The bench's only reads of the system clock: host UTC time for TOTP and elapsed time for
//! the batch figures. Everything else receives time through [`okey_hid::bench::HostClock`].

use std::time::{Duration, Instant};

use okey_hid::bench::HostClock;

/// The host's UTC clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl HostClock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn unix_now(&mut self) -> u64 {
        // A clock before 1970 reads as 0: TOTP codes then fail verification, which the
        // technician sees; nothing is written on the strength of a wrong time alone.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Wall-clock stopwatch for the figures printed after a run.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    /// Starts now.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Time since start.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

//! The one place the store reads the wall clock (creation and update times, audit times of
//! administrative changes). Verification never reads it: `now` is the caller's parameter.

/// Seconds since the Unix epoch (0 if the clock is before it).
// This is the store's clock module, the one place allowed to read the system clock.
#[allow(clippy::disallowed_methods)]
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A monotonic instant (how long ago the HSM last answered).
pub(crate) fn monotonic_now() -> std::time::Instant {
    std::time::Instant::now()
}

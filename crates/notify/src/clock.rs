//! The one place the mail sender reads the wall clock (enqueueing and retry times).

/// Seconds since the Unix epoch (0 if the clock is before it).
#[allow(clippy::disallowed_methods)]
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! Dates as the administration reads them: the French long form ("1er août 2026 à 09 h 05"),
//! in a time zone (mails: the `[smtp]` table's `time_zone`; receipts: the offset asked for).
//! Conversions go through jiff and the time zone database it carries, so a machine without
//! tzdata prints the same dates.

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use okey_documents::LocalDateTime;

/// The zone mails are dated in when the configuration names none.
pub(crate) const DEFAULT_ZONE: &str = "UTC";

/// The time zone called `name` (IANA, e.g. `Indian/Reunion`), or why not.
pub(crate) fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| {
        format!(
            "unknown time zone {name:?}: give an IANA name such as Europe/Paris or Indian/Reunion"
        )
    })
}

/// A fixed offset from UTC, in minutes.
pub(crate) fn fixed(offset_minutes: i32) -> TimeZone {
    Offset::from_seconds(offset_minutes.saturating_mul(60))
        .map(TimeZone::fixed)
        .unwrap_or(TimeZone::UTC)
}

fn instant(t: u64) -> Timestamp {
    i64::try_from(t)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Unix time `t` as a civil date and time in `zone`.
pub(crate) fn civil(t: u64, zone: &TimeZone) -> LocalDateTime {
    let dt = zone.to_datetime(instant(t));
    let small = |v: i8| u8::try_from(v).unwrap_or(0);
    LocalDateTime {
        year: u16::try_from(dt.year()).unwrap_or(0),
        month: small(dt.month()),
        day: small(dt.day()),
        hour: small(dt.hour()),
        minute: small(dt.minute()),
    }
}

/// Unix time `t` in French in `zone`, with its offset so that nobody has to guess the zone:
/// "15 août 2026 à 13 h 05 (UTC+04:00)", "… UTC" at offset zero.
pub(crate) fn french(t: u64, zone: &TimeZone) -> String {
    with_offset(civil(t, zone).to_french(), t, zone)
}

/// `when` followed by the offset of `zone` at `t`: "… UTC" at offset zero, else "… (UTC+04:00)".
fn with_offset(when: String, t: u64, zone: &TimeZone) -> String {
    match offset_label(t, zone).as_str() {
        "UTC" => format!("{when} UTC"),
        label => format!("{when} ({label})"),
    }
}

/// The offset of `zone` at `t`: "UTC", "UTC+04:00", "UTC-02:30".
fn offset_label(t: u64, zone: &TimeZone) -> String {
    let offset = zone.to_offset(instant(t)).seconds();
    if offset == 0 {
        return "UTC".to_owned();
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let m = offset.unsigned_abs() / 60;
    format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
}

/// The time zone a reader's dates are in (the portal's pages and forms), by its IANA name.
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// The zone called `name` (IANA, e.g. `Indian/Reunion`), or why not.
    pub fn named(name: &str) -> Result<Zone, String> {
        Ok(Zone {
            name: name.to_owned(),
            tz: zone(name)?,
        })
    }

    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            name: DEFAULT_ZONE.to_owned(),
            tz: TimeZone::UTC,
        }
    }

    /// Its IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its offset from UTC at Unix time `t`, in minutes.
    pub fn offset_minutes(&self, t: u64) -> i32 {
        self.tz.to_offset(instant(t)).seconds() / 60
    }

    /// The offset at `t` as read after a time: "UTC", "UTC+04:00", "UTC-02:30".
    pub fn offset_label(&self, t: u64) -> String {
        offset_label(t, &self.tz)
    }

    /// Unix time `t` as `JJ/MM/AAAA HH:MM` in this zone, then its offset ("… UTC",
    /// "… (UTC+04:00)"); "—" for 0 (no date).
    pub fn short(&self, t: u64) -> String {
        if t == 0 {
            return "—".to_owned();
        }
        let c = civil(t, &self.tz);
        let when = format!(
            "{:02}/{:02}/{:04} {:02}:{:02}",
            c.day, c.month, c.year, c.hour, c.minute
        );
        with_offset(when, t, &self.tz)
    }

    /// A date and time typed as `YYYY-MM-DDTHH:MM` (what an HTML `datetime-local` field
    /// sends), read in this zone, as Unix time; `None` for anything else, a year outside
    /// 1970–9999, or a time that does not exist there (skipped when clocks go forward). A
    /// time that happens twice (clocks going back) is the first.
    pub fn minute(&self, s: &str) -> Option<u64> {
        let dt = typed_minute(s)?;
        let amb = self.tz.to_ambiguous_zoned(dt);
        let zoned = match amb.offset() {
            jiff::tz::AmbiguousOffset::Unambiguous { .. } => amb.unambiguous().ok()?,
            jiff::tz::AmbiguousOffset::Fold { .. } => amb.earlier().ok()?,
            jiff::tz::AmbiguousOffset::Gap { .. } => return None,
        };
        let t = zoned.timestamp().as_second();
        u64::try_from(t).ok()
    }
}

fn typed_minute(s: &str) -> Option<jiff::civil::DateTime> {
    let s = s.trim();
    let (date, time) = s.split_once('T')?;
    let shaped = date.len() == 10
        && time.len() == 5
        && s.bytes()
            .enumerate()
            .all(|(i, b)| matches!(i, 4 | 7 | 10 | 13) || b.is_ascii_digit());
    if !shaped {
        return None;
    }
    let dt: jiff::civil::DateTime = s.parse().ok()?;
    (1970..=9999).contains(&dt.year()).then_some(dt)
}

/// A date and time typed as `YYYY-MM-DDTHH:MM` (what an HTML `datetime-local` field sends), read
/// in UTC, as Unix time; `None` for anything else or a year outside 1970–9999.
pub fn utc_minute(s: &str) -> Option<u64> {
    Zone::utc().minute(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_dates_in_a_zone_follow_its_offset_and_summer_time() {
        let utc = TimeZone::UTC;
        assert_eq!(french(1_786_784_700, &utc), "15 août 2026 à 09 h 05 UTC");
        assert_eq!(french(1_835_481_540, &utc), "29 février 2028 à 23 h 59 UTC");
        let reunion = zone("Indian/Reunion").expect("zone");
        assert_eq!(
            french(1_786_784_700, &reunion),
            "15 août 2026 à 13 h 05 (UTC+04:00)"
        );
        let paris = zone("Europe/Paris").expect("zone");
        assert_eq!(
            french(0, &zone(DEFAULT_ZONE).expect("zone")),
            "1er janvier 1970 à 00 h 00 UTC"
        );
        // Summer time (UTC+2) in August, winter time (UTC+1) in February.
        assert_eq!(
            french(1_786_784_700, &paris),
            "15 août 2026 à 11 h 05 (UTC+02:00)"
        );
        assert_eq!(
            french(1_835_481_540, &paris),
            "1er mars 2028 à 00 h 59 (UTC+01:00)"
        );
        assert_eq!(
            french(1_786_784_700, &fixed(-150)),
            "15 août 2026 à 06 h 35 (UTC-02:30)"
        );
        assert!(zone("Mars/Olympus").is_err());
    }

    #[test]
    fn a_typed_minute_is_read_in_utc_and_anything_else_refused() {
        assert_eq!(utc_minute("1970-01-01T00:01"), Some(60));
        assert_eq!(utc_minute("2026-12-10T09:30"), Some(1_796_895_000));
        assert_eq!(utc_minute("2024-02-29T23:59"), Some(1_709_251_140));
        for bad in [
            "",
            "2026-12-10",
            "2026-12-10T9:30",
            "2026-12-10T09:30:00",
            "2026-02-30T09:30",
            "2026-12-10T24:00",
            "1969-12-31T23:59",
            "2026-12-10 09:30",
            "+2026-12-10T09:3",
        ] {
            assert_eq!(utc_minute(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_zone_shows_and_reads_its_own_time() {
        let reunion = Zone::named("Indian/Reunion").expect("zone");
        // 2031-03-14 05:30 UTC is 09:30 in La Réunion (UTC+4, no summer time). The instants
        // are the ones Python's zoneinfo gives for the same civil times.
        assert_eq!(reunion.minute("2031-03-14T09:30"), Some(1_931_232_600));
        assert_eq!(reunion.short(1_931_232_600), "14/03/2031 09:30 (UTC+04:00)");
        assert_eq!(Zone::utc().short(1_931_232_600), "14/03/2031 05:30 UTC");
        assert_eq!(reunion.short(0), "—");
        let paris = Zone::named("Europe/Paris").expect("zone");
        // 2026-03-29: 02:00 to 03:00 does not exist in Paris; 2026-10-25: 02:30 happens twice.
        assert_eq!(paris.minute("2026-03-29T02:30"), None);
        assert_eq!(paris.minute("2026-10-25T02:30"), Some(1_792_888_200));
        assert_eq!(paris.short(1_792_888_200), "25/10/2026 02:30 (UTC+02:00)");
        assert_eq!(paris.offset_minutes(1_792_888_200), 120);
        assert_eq!(paris.minute("2026-12-10T09:30"), Some(1_796_891_400));
        assert!(Zone::named("Mars/Olympus").is_err());
    }
}

//! Fuzz target: Nitrokey Pro response parsing, and the driver fed arbitrary reports.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use okey_hid::nitrokey::proto::{self, CodeInfo, Response, SlotInfo, StatusInfo};
use okey_hid::nitrokey::{NitrokeyPro, Slot, Timing};
use okey_hid::secret::{FixedTempPassword, TempPassword};
use okey_hid::transport::{Transport, TransportError};

/// Answers every GET_REPORT with the next 64 bytes of fuzz input.
struct Fuzzed<'a>(&'a [u8]);

impl Transport for Fuzzed<'_> {
    fn send_feature_report(&mut self, _: &[u8], _: Duration) -> Result<(), TransportError> {
        Ok(())
    }
    fn get_feature_report(&mut self, buf: &mut [u8], _: Duration) -> Result<usize, TransportError> {
        if self.0.is_empty() {
            return Err(TransportError::Disconnected);
        }
        let n = self.0.len().min(buf.len()).min(64);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
    fn pause(&mut self, _: Duration) {}
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Response::parse(data) {
        let p = r.payload();
        let _ = StatusInfo::parse(p);
        let _ = SlotInfo::parse(p);
        let _ = CodeInfo::parse(p);
        let _ = proto::parse_slot_name(p);
        let _ = proto::parse_retry_count(p);
    }
    let _ = StatusInfo::parse(data);
    let _ = SlotInfo::parse(data);
    let _ = CodeInfo::parse(data);
    let timing = Timing {
        max_polls: 3,
        ..Timing::default()
    };
    let tmp = TempPassword::from_text("fuzz").expect("valid");
    if let Ok(mut nk) = NitrokeyPro::open_with(Fuzzed(data), timing, Box::new(FixedTempPassword(tmp))) {
        let _ = nk.read_slot(Slot::Hotp(0));
        let _ = nk.get_code(Slot::Totp(1), None);
        let _ = nk.user_retry_count();
    }
});

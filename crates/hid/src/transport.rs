//! The transport seam: feature reports out and in, with timeouts. The real implementation is
//! [`crate::hidapi_backend`]; the simulated firmware in `okey-token-sim` implements the same
//! trait, so every driver and workflow runs unchanged against either.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// A transport-level failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransportError {
    /// The device is gone (unplugged, or its node vanished).
    #[error("device disconnected")]
    Disconnected,
    /// No answer within the timeout.
    #[error("device did not answer within {0:?}")]
    Timeout(Duration),
    /// The operating system refused the transfer.
    #[error("HID transfer failed: {0}")]
    Io(String),
}

/// Feature-report access to one opened HID interface.
///
/// Reports are passed **without** the report-ID byte: both supported families use no report
/// IDs, and the hidapi implementation adds and strips the leading `0x00` itself.
pub trait Transport {
    /// SET_REPORT(feature) with `report` as data.
    fn send_feature_report(
        &mut self,
        report: &[u8],
        timeout: Duration,
    ) -> Result<(), TransportError>;

    /// GET_REPORT(feature) into `buf`; returns the number of data bytes received.
    fn get_feature_report(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, TransportError>;

    /// Lets `duration` pass between transfers. Real transports sleep; simulated ones advance
    /// their virtual clock, which keeps tests fast and deterministic.
    fn pause(&mut self, duration: Duration);
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn send_feature_report(
        &mut self,
        report: &[u8],
        timeout: Duration,
    ) -> Result<(), TransportError> {
        (**self).send_feature_report(report, timeout)
    }
    fn get_feature_report(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, TransportError> {
        (**self).get_feature_report(buf, timeout)
    }
    fn pause(&mut self, duration: Duration) {
        (**self).pause(duration);
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send_feature_report(
        &mut self,
        report: &[u8],
        timeout: Duration,
    ) -> Result<(), TransportError> {
        (**self).send_feature_report(report, timeout)
    }
    fn get_feature_report(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, TransportError> {
        (**self).get_feature_report(buf, timeout)
    }
    fn pause(&mut self, duration: Duration) {
        (**self).pause(duration);
    }
}

/// A boxed transport as returned by a [`DeviceProvider`].
pub type BoxedTransport = Box<dyn Transport + Send>;

/// Token families the bench knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Nitrokey Pro (and the Librem Key, which runs the Pro firmware).
    NitrokeyPro,
    /// YubiKey OTP application (keyboard interface).
    YubiKeyOtp,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NitrokeyPro => "Nitrokey Pro",
            Self::YubiKeyOtp => "YubiKey OTP",
        })
    }
}

/// Nitrokey / Librem USB vendor IDs and product IDs handled by the Pro driver.
pub const NITROKEY_PRO_IDS: &[(u16, u16)] = &[(0x20A0, 0x4108), (0x316D, 0x4C4B)];
/// Yubico vendor ID.
pub const YUBICO_VID: u16 = 0x1050;
/// Yubico product IDs whose USB configuration includes the OTP keyboard interface.
pub const YUBIKEY_OTP_PIDS: &[u16] = &[
    0x0010, 0x0110, 0x0111, 0x0114, 0x0116, 0x0401, 0x0403, 0x0405, 0x0407, 0x0410,
];

/// The family of a device with these USB IDs, if the bench supports it.
pub fn family_of(vendor_id: u16, product_id: u16) -> Option<Family> {
    if NITROKEY_PRO_IDS.contains(&(vendor_id, product_id)) {
        Some(Family::NitrokeyPro)
    } else if vendor_id == YUBICO_VID && YUBIKEY_OTP_PIDS.contains(&product_id) {
        Some(Family::YubiKeyOtp)
    } else {
        None
    }
}

/// One supported HID interface found on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceInfo {
    /// Stable handle for opening it (hidapi path, or a simulated device's name).
    pub path: String,
    /// USB vendor ID.
    pub vendor_id: u16,
    /// USB product ID.
    pub product_id: u16,
    /// Family, from the IDs.
    pub family: Family,
    /// USB iSerial string, when the device has one.
    pub usb_serial: Option<String>,
    /// Product string, when known.
    pub product: Option<String>,
}

/// A device arrived or left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// A supported device appeared.
    Arrived(DeviceInfo),
    /// A device disappeared.
    Left(DeviceInfo),
}

/// A discovery/open failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DiscoveryError {
    /// The HID subsystem could not be initialised.
    #[error("HID subsystem unavailable: {0}")]
    Unavailable(String),
    /// The device could not be opened (gone, or no permission).
    #[error("cannot open {path}: {reason}")]
    Open {
        /// Device path.
        path: String,
        /// Reason from the OS.
        reason: String,
    },
}

/// Finds supported devices, opens them and reports plug/unplug events. Implemented over
/// hidapi + rusb for hardware and by `okey-token-sim` for `--simulate`.
pub trait DeviceProvider {
    /// Supported devices present now.
    fn enumerate(&mut self) -> Result<Vec<DeviceInfo>, DiscoveryError>;

    /// Opens one device for feature-report access.
    fn open(&mut self, device: &DeviceInfo) -> Result<BoxedTransport, DiscoveryError>;

    /// Waits up to `timeout` for the next plug or unplug; `Ok(None)` when nothing happened.
    fn wait_event(&mut self, timeout: Duration) -> Result<Option<DeviceEvent>, DiscoveryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_usb_ids() {
        assert_eq!(family_of(0x20A0, 0x4108), Some(Family::NitrokeyPro));
        assert_eq!(family_of(0x316D, 0x4C4B), Some(Family::NitrokeyPro));
        // Nitrokey Storage speaks a different PIN protocol: not handled by the Pro driver.
        assert_eq!(family_of(0x20A0, 0x4109), None);
        assert_eq!(family_of(0x1050, 0x0407), Some(Family::YubiKeyOtp));
        // FIDO-only and CCID-only YubiKey configurations have no OTP interface.
        assert_eq!(family_of(0x1050, 0x0402), None);
        assert_eq!(family_of(0x1050, 0x0120), None);
    }
}

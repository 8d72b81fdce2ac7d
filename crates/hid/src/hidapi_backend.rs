//! Hardware access: hidapi (pure-Rust Linux hidraw backend, no system library) for feature
//! reports and enumeration, and libusb hotplug through `rusb` to learn quickly when a token is
//! plugged or pulled, with periodic re-enumeration where hotplug is unavailable.
//!
//! `rusb`'s global context panics on first use on a machine without a USB subsystem (and
//! `rusb::has_hotplug` touches it), so this module only ever creates an explicit
//! [`rusb::Context`] and treats a failed initialisation as
//! "no USB hotplug here" (falling back to polling); nothing here panics.

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hidapi::{HidApi, HidDevice};
use rusb::UsbContext;

use crate::transport::{
    BoxedTransport, DeviceEvent, DeviceInfo, DeviceProvider, DiscoveryError, Family, Transport,
    TransportError, YUBICO_VID, family_of,
};

/// Largest report either family uses, plus the report-ID byte.
const MAX_REPORT: usize = 64 + 1;

/// An opened hidraw device.
pub struct HidapiTransport {
    device: HidDevice,
}

impl std::fmt::Debug for HidapiTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidapiTransport").finish_non_exhaustive()
    }
}

fn map_hid_error(e: &hidapi::HidError) -> TransportError {
    let text = e.to_string();
    // The hidraw backend reports a vanished node as ENODEV / "No such device".
    if text.contains("No such device") || text.contains("ENODEV") || text.contains("os error 19") {
        TransportError::Disconnected
    } else {
        TransportError::Io(text)
    }
}

impl Transport for HidapiTransport {
    /// hidraw feature-report ioctls are synchronous; the kernel bounds them with its USB
    /// control-transfer timeout (5 s), which is the effective timeout on this backend.
    fn send_feature_report(
        &mut self,
        report: &[u8],
        _timeout: Duration,
    ) -> Result<(), TransportError> {
        if report.len() >= MAX_REPORT {
            return Err(TransportError::Io("report too long".into()));
        }
        let mut buf = [0u8; MAX_REPORT];
        let n = report.len() + 1;
        if let Some(dst) = buf.get_mut(1..n) {
            dst.copy_from_slice(report);
        }
        let out = self
            .device
            .send_feature_report(buf.get(..n).unwrap_or_default())
            .map_err(|e| map_hid_error(&e));
        zeroize::Zeroize::zeroize(&mut buf);
        out
    }

    fn get_feature_report(
        &mut self,
        buf: &mut [u8],
        _timeout: Duration,
    ) -> Result<usize, TransportError> {
        if buf.len() >= MAX_REPORT {
            return Err(TransportError::Io("buffer too long".into()));
        }
        let mut raw = [0u8; MAX_REPORT];
        let want = buf.len() + 1;
        let n = self
            .device
            .get_feature_report(raw.get_mut(..want).unwrap_or_default())
            .map_err(|e| map_hid_error(&e))?;
        // The count includes the report-ID byte at raw[0].
        let data = n.saturating_sub(1).min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..data), raw.get(1..=data)) {
            dst.copy_from_slice(src);
        }
        zeroize::Zeroize::zeroize(&mut raw);
        Ok(data)
    }

    fn pause(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Picks the HID interface the bench talks to: the Nitrokey has one; a YubiKey exposes the OTP
/// application on its keyboard interface (usage page 1, usage 6, interface 0).
fn supported(info: &hidapi::DeviceInfo) -> Option<DeviceInfo> {
    let family = family_of(info.vendor_id(), info.product_id())?;
    if family == Family::YubiKeyOtp && info.vendor_id() == YUBICO_VID {
        let keyboard = info.usage_page() == 0x0001 && info.usage() == 0x0006;
        if !keyboard && info.interface_number() != 0 {
            return None;
        }
    }
    Some(DeviceInfo {
        path: info.path().to_string_lossy().into_owned(),
        vendor_id: info.vendor_id(),
        product_id: info.product_id(),
        family,
        usb_serial: info.serial_number().map(str::to_owned),
        product: info.product_string().map(str::to_owned),
    })
}

struct UsbWatch {
    context: rusb::Context,
    changed: Arc<AtomicBool>,
    _registrations: Vec<rusb::Registration<rusb::Context>>,
}

struct ChangeFlag(Arc<AtomicBool>);

impl<C: UsbContext> rusb::Hotplug<C> for ChangeFlag {
    fn device_arrived(&mut self, _device: rusb::Device<C>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn device_left(&mut self, _device: rusb::Device<C>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl UsbWatch {
    /// libusb hotplug for the supported vendors, or `None` where there is no USB subsystem or
    /// libusb lacks hotplug support on this platform.
    fn start() -> Option<Self> {
        // Not `rusb::has_hotplug()`: it initialises the global context, which panics here.
        // A context without hotplug support fails the registration below instead.
        let context = match rusb::Context::new() {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "no USB subsystem: device changes found by polling");
                return None;
            }
        };
        let changed = Arc::new(AtomicBool::new(false));
        let mut registrations = Vec::new();
        for vid in [0x20A0u16, 0x316D, YUBICO_VID] {
            let reg = rusb::HotplugBuilder::new()
                .vendor_id(vid)
                .enumerate(false)
                .register(&context, Box::new(ChangeFlag(Arc::clone(&changed))));
            match reg {
                Ok(r) => registrations.push(r),
                Err(e) => {
                    tracing::info!(error = %e, "USB hotplug registration failed: polling");
                    return None;
                }
            }
        }
        Some(Self {
            context,
            changed,
            _registrations: registrations,
        })
    }
}

/// Hardware device provider: hidapi enumeration, libusb hotplug wake-ups, polling fallback.
pub struct HidapiProvider {
    api: HidApi,
    known: Vec<DeviceInfo>,
    pending: VecDeque<DeviceEvent>,
    usb: Option<UsbWatch>,
    poll_interval: Duration,
}

impl std::fmt::Debug for HidapiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidapiProvider")
            .field("known", &self.known)
            .field("hotplug", &self.usb.is_some())
            .finish_non_exhaustive()
    }
}

impl HidapiProvider {
    /// Initialises hidapi and, when available, USB hotplug.
    pub fn new() -> Result<Self, DiscoveryError> {
        let api = HidApi::new().map_err(|e| DiscoveryError::Unavailable(e.to_string()))?;
        let mut p = Self {
            api,
            known: Vec::new(),
            pending: VecDeque::new(),
            usb: UsbWatch::start(),
            poll_interval: Duration::from_millis(500),
        };
        p.known = p.scan()?;
        Ok(p)
    }

    /// True when libusb hotplug is active (otherwise device changes are found by polling).
    pub fn has_hotplug(&self) -> bool {
        self.usb.is_some()
    }

    /// Sets the polling interval used without hotplug.
    pub fn set_poll_interval(&mut self, interval: Duration) {
        self.poll_interval = interval.max(Duration::from_millis(20));
    }

    fn scan(&mut self) -> Result<Vec<DeviceInfo>, DiscoveryError> {
        self.api
            .refresh_devices()
            .map_err(|e| DiscoveryError::Unavailable(e.to_string()))?;
        let mut out: Vec<DeviceInfo> = Vec::new();
        for d in self.api.device_list() {
            if let Some(info) = supported(d)
                && !out.iter().any(|o| o.path == info.path)
            {
                out.push(info);
            }
        }
        Ok(out)
    }

    fn diff(&mut self) -> Result<(), DiscoveryError> {
        let now = self.scan()?;
        for d in &now {
            if !self.known.contains(d) {
                self.pending.push_back(DeviceEvent::Arrived(d.clone()));
            }
        }
        for d in &self.known {
            if !now.contains(d) {
                self.pending.push_back(DeviceEvent::Left(d.clone()));
            }
        }
        self.known = now;
        Ok(())
    }
}

impl DeviceProvider for HidapiProvider {
    fn enumerate(&mut self) -> Result<Vec<DeviceInfo>, DiscoveryError> {
        self.diff()?;
        Ok(self.known.clone())
    }

    fn open(&mut self, device: &DeviceInfo) -> Result<BoxedTransport, DiscoveryError> {
        let path = CString::new(device.path.clone()).map_err(|_| DiscoveryError::Open {
            path: device.path.clone(),
            reason: "path contains a NUL byte".into(),
        })?;
        let dev = self
            .api
            .open_path(&path)
            .map_err(|e| DiscoveryError::Open {
                path: device.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Box::new(HidapiTransport { device: dev }))
    }

    fn wait_event(&mut self, timeout: Duration) -> Result<Option<DeviceEvent>, DiscoveryError> {
        if let Some(e) = self.pending.pop_front() {
            return Ok(Some(e));
        }
        let mut waited = Duration::ZERO;
        while waited < timeout {
            let step = self.poll_interval.min(timeout - waited);
            match &self.usb {
                Some(usb) => {
                    if let Err(e) = usb.context.handle_events(Some(step)) {
                        tracing::warn!(error = %e, "libusb event handling failed: polling");
                        self.usb = None;
                    } else if usb.changed.swap(false, Ordering::SeqCst) {
                        // The hidraw node follows the USB event closely; give udev a moment.
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                None => std::thread::sleep(step),
            }
            waited += step;
            self.diff()?;
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usb_watch_never_panics_without_a_usb_bus() {
        // On machines without /sys/bus/usb this must be `None`, not a panic; with a bus it may
        // be either, depending on libusb's hotplug support.
        let watch = UsbWatch::start();
        if !std::path::Path::new("/sys/bus/usb").exists() {
            assert!(watch.is_none());
        }
    }

    #[test]
    fn provider_initialises_and_enumerates_without_devices() {
        // hidraw may be absent entirely (containers); enumeration must still not panic.
        match HidapiProvider::new() {
            Ok(mut p) => {
                let list = p.enumerate().expect("enumerate");
                assert!(
                    list.iter()
                        .all(|d| family_of(d.vendor_id, d.product_id).is_some())
                );
                assert_eq!(p.wait_event(Duration::from_millis(30)).ok(), Some(None));
            }
            Err(DiscoveryError::Unavailable(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

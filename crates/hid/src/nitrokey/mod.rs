//! Nitrokey Pro: wire format ([`proto`]) and driver ([`driver`]).

pub mod driver;
pub mod proto;

pub use driver::{AdminSession, NitrokeyError, NitrokeyPro, SlotWrite, Timing};
pub use proto::{
    CommandId, CommandStatus, FirmwareVersion, GeneralConfig, Generation, Slot, SlotConfig,
    SlotInfo, StatusInfo, TimeMode,
};

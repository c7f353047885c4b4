//! Live dictation: microphones, capture and typing the text into the focused window.

pub mod agreement;
#[cfg(feature = "listen")]
pub mod capture;
#[cfg(unix)]
pub mod control;
#[cfg(feature = "listen")]
pub mod devices;
pub mod dictation;
pub mod history;
#[cfg(target_os = "linux")]
pub mod hotkey;
pub mod session;
pub mod spoken;
pub mod typing;
pub mod whole;

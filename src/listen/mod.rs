//! Live dictation: microphones, capture and typing the text into the focused window.

pub mod agreement;
#[cfg(feature = "listen")]
pub mod capture;
#[cfg(feature = "listen")]
pub mod devices;
pub mod dictation;
pub mod session;
pub mod spoken;
pub mod typing;

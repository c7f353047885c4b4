//! Live dictation: microphones, capture and typing the text into the focused window.

pub mod capture;
pub mod devices;
pub mod dictation;
pub mod session;
pub mod typing;

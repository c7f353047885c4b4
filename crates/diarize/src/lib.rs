//! Speaker diarization: who spoke when.
//!
//! Weights are read straight from the PyTorch checkpoints the models are published as
//! ([`pt`]); the forward passes are written out by hand ([`segmentation`] for pyannote's
//! segmentation-3.0, [`fbank`] and [`campplus`] for the CAM++ speaker embedding), so no ML
//! runtime is linked.

pub mod campplus;
pub mod cluster;
pub mod der;
pub mod error;
pub mod fbank;
pub mod pipeline;
pub mod pt;
pub mod rttm;
pub mod segmentation;
pub mod tensor;

pub use error::{Error, Result};
pub use pipeline::{Diarization, DiarizeOptions, Models, SpeakerTurn};
pub use tensor::Tensor;

//! Audio in: decoding any common file format to PCM ([`decode`]) and converting it to the
//! 16 kHz mono `f32` whisper wants ([`resample`]). The only module that decodes or resamples.

pub mod decode;
pub mod pipe;
pub mod resample;
pub mod stream;

pub use decode::{decode_bytes, decode_path, DecodedAudio, InputSource};
pub use resample::{downmix_to_mono, resample_to_16k};
pub use stream::AudioStream;

/// The sample rate whisper works at.
pub const WHISPER_SAMPLE_RATE: u32 = 16_000;

/// Input sample rates verbatim accepts, in Hz: from below the oldest telephony and
/// voice-recorder rates up to the highest rate PCM interfaces offer. A header outside them is
/// forged or corrupt, and resampling it would cost memory in proportion to the forged ratio.
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// The one-line reason a header's sample rate is refused, `None` when it is in range.
pub(crate) fn bad_rate(rate: u32) -> Option<String> {
    (!SAMPLE_RATES.contains(&rate)).then(|| {
        format!(
            "the header declares a sample rate of {rate} Hz (verbatim reads {} to {} Hz; the file is corrupt or forged)",
            SAMPLE_RATES.start(),
            SAMPLE_RATES.end()
        )
    })
}

/// Decoded audio converted for whisper: one or more 16 kHz mono streams.
#[derive(Debug, Clone)]
pub struct PreparedAudio {
    /// One stream when downmixed, else one per input channel.
    pub streams: Vec<Vec<f32>>,
    /// Sample rate of the source before resampling.
    pub source_rate: u32,
    /// Channel count of the source.
    pub source_channels: usize,
    /// Codec name as reported by the decoder.
    pub codec: String,
    /// Non-fatal problems found while decoding (e.g. NaN samples replaced).
    pub warnings: Vec<String>,
}

impl PreparedAudio {
    /// Duration in seconds of the prepared audio.
    pub fn duration(&self) -> f64 {
        self.streams.first().map_or(0.0, |s| s.len() as f64) / WHISPER_SAMPLE_RATE as f64
    }
}

/// Decodes `source` and returns 16 kHz mono audio: downmixed, or one stream per channel when
/// `split_channels` is set.
pub fn load(source: &InputSource, split_channels: bool) -> crate::Result<PreparedAudio> {
    let decoded = match source {
        InputSource::Path(path) => decode_path(path, split_channels)?,
        InputSource::Bytes { name, data } => decode_bytes(name, data, split_channels)?,
    };
    prepare(decoded, split_channels, source.display_path())
}

/// Converts already decoded audio to whisper's format.
pub fn prepare(
    decoded: DecodedAudio,
    split_channels: bool,
    path: std::path::PathBuf,
) -> crate::Result<PreparedAudio> {
    let DecodedAudio {
        sample_rate,
        channels,
        codec,
        warnings,
        source_channels,
    } = decoded;
    let planar = if split_channels {
        channels
    } else {
        vec![downmix_to_mono(&channels)]
    };
    let mut streams = Vec::with_capacity(planar.len());
    for channel in planar {
        streams.push(resample_to_16k(&channel, sample_rate).map_err(|e| {
            crate::Error::input(path.clone(), format!("cannot resample audio: {e}"))
        })?);
    }
    Ok(PreparedAudio {
        streams,
        source_rate: sample_rate,
        source_channels,
        codec,
        warnings,
    })
}

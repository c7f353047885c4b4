//! Decoding files and byte buffers to planar `f32` PCM.
//!
//! Order of attempts: WAV through hound (exact, fast, strict about headers), every other
//! container symphonia knows, then an `ffmpeg` subprocess for what symphonia cannot decode
//! (Opus, HE-AAC, most video). Every failure is a one-line [`Error::Input`] naming the file.

use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use symphonia::core::codecs::audio::{AudioCodecId, AudioCodecParameters, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use crate::error::{Error, Result};

/// Where audio comes from.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// A file on disk.
    Path(PathBuf),
    /// Bytes already in memory (standard input); `name` is used in messages.
    Bytes {
        /// Name for messages, e.g. `-`.
        name: String,
        /// The encoded file's bytes.
        data: Vec<u8>,
    },
}

impl InputSource {
    /// The path or name used in messages.
    pub fn display_path(&self) -> PathBuf {
        match self {
            InputSource::Path(p) => p.clone(),
            InputSource::Bytes { name, .. } => PathBuf::from(name),
        }
    }
}

/// Decoded PCM, planar, at the source sample rate.
#[derive(Debug, Clone, Default)]
pub struct DecodedAudio {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// One vector of samples per channel (all the same length).
    pub channels: Vec<Vec<f32>>,
    /// Channel count of the source file (ffmpeg may already have downmixed `channels`).
    pub source_channels: usize,
    /// Codec name, for reports.
    pub codec: String,
    /// Non-fatal problems (replaced NaN samples, undecodable packets skipped).
    pub warnings: Vec<String>,
}

/// Receives PCM as a decoder produces it, so a file never has to be in memory whole.
pub trait PcmSink {
    /// One block of interleaved samples at `rate` Hz with `channels` channels. Returning
    /// `false` stops decoding (the consumer went away).
    fn block(&mut self, interleaved: &[f32], channels: usize, rate: u32) -> bool;
}

/// Facts about a decode, beside the samples the sink received.
#[derive(Debug, Clone, Default)]
pub struct DecodeInfo {
    /// Channel count of the source file (ffmpeg may already have downmixed the blocks).
    pub source_channels: usize,
    /// Codec name, for reports.
    pub codec: String,
    /// Non-fatal problems (undecodable packets skipped).
    pub warnings: Vec<String>,
}

/// Collects blocks into planar channels: the whole-file decoders' sink.
#[derive(Default)]
struct Collect {
    channels: Vec<Vec<f32>>,
    rate: u32,
    mismatch: bool,
}

impl PcmSink for Collect {
    fn block(&mut self, interleaved: &[f32], channels: usize, rate: u32) -> bool {
        if self.channels.is_empty() {
            self.channels = vec![Vec::new(); channels];
            self.rate = rate;
        } else if self.channels.len() != channels || self.rate != rate {
            self.mismatch = true;
            return false;
        }
        for (i, s) in interleaved.iter().enumerate() {
            self.channels[i % channels].push(*s);
        }
        true
    }
}

impl Collect {
    fn into_audio(self, display: &Path, info: DecodeInfo) -> Result<DecodedAudio> {
        if self.mismatch {
            return Err(Error::input(
                display,
                "channel count or sample rate changes mid-stream",
            ));
        }
        Ok(DecodedAudio {
            sample_rate: self.rate,
            channels: self.channels,
            source_channels: info.source_channels,
            codec: info.codec,
            warnings: info
                .warnings
                .into_iter()
                .map(|w| format!("{}: {w}", display.display()))
                .collect(),
        })
    }
}

/// Decodes a file. With `keep_channels` false, the ffmpeg fallback may downmix for speed.
pub fn decode_path(path: &Path, keep_channels: bool) -> Result<DecodedAudio> {
    let mut collect = Collect::default();
    let info = stream_path(path, keep_channels, &mut collect)?;
    finish(path, collect.into_audio(path, info)?)
}

/// Decodes `path` block by block into `sink`: WAV through hound, then symphonia, then ffmpeg
/// through a pipe. Errors found before the first block (missing file, unknown format) are
/// returned as for [`decode_path`]; the caller validates the samples it receives.
pub fn stream_path(path: &Path, keep_channels: bool, sink: &mut dyn PcmSink) -> Result<DecodeInfo> {
    let meta = check_input(path)?;
    let mut file =
        std::fs::File::open(path).map_err(|e| Error::input_from(path, io_reason(&e), e))?;
    let mut head = [0u8; 12];
    let n =
        read_up_to(&mut file, &mut head).map_err(|e| Error::input_from(path, io_reason(&e), e))?;
    file.rewind()
        .map_err(|e| Error::input_from(path, io_reason(&e), e))?;
    if is_wav(&head[..n]) {
        decode_wav_with_fallbacks(
            path,
            std::io::BufReader::new(file),
            meta.len(),
            || {
                let file = std::fs::File::open(path)
                    .map_err(|e| Error::input_from(path, io_reason(&e), e))?;
                Ok(Box::new(file))
            },
            |failure, sink| {
                ffmpeg_fallback(path, FfmpegInput::File(path), failure, keep_channels, sink)
            },
            sink,
        )
    } else {
        let hint = path.extension().and_then(|e| e.to_str());
        let mut info = match decode_symphonia(Box::new(file), hint, sink) {
            Ok(info) => info,
            Err(err) => ffmpeg_fallback(path, FfmpegInput::File(path), err, keep_channels, sink)?,
        };
        if head.starts_with(b"OggS") && ogg_lacks_end(path) {
            info.warnings.push(
                "the Ogg stream has no end-of-stream page; the file is probably truncated".into(),
            );
        }
        Ok(info)
    }
}

/// Whether the last Ogg page in the file lacks the end-of-stream flag, which every complete
/// Ogg stream (Vorbis, Opus, FLAC in Ogg) sets on its final page: the decoders stop quietly
/// at a cut, and Ogg headers carry no total length to compare with.
fn ogg_lacks_end(path: &Path) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(65_536);
    let mut tail = Vec::new();
    if file.seek(std::io::SeekFrom::Start(start)).is_err() || file.read_to_end(&mut tail).is_err() {
        return false;
    }
    // A page header: "OggS", version 0, then the header-type byte (0x04 = end of stream).
    let last_page = tail
        .windows(6)
        .rposition(|w| w[..4] == *b"OggS" && w[4] == 0)
        .map(|i| tail[i + 5]);
    last_page.is_some_and(|flags| flags & 0x04 == 0)
}

/// The checks every input file gets before anything else touches it (or its outputs): it
/// exists, is readable, is not a directory and is not empty. Returns its metadata.
pub fn check_input(path: &Path) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| Error::input_from(path, io_reason(&e), e))?;
    if meta.is_dir() {
        return Err(Error::input(path, "is a directory, not an audio file"));
    }
    if meta.len() == 0 {
        return Err(Error::input(path, "empty file (0 bytes)"));
    }
    Ok(meta)
}

/// Decodes an encoded file held in memory (e.g. read from standard input).
pub fn decode_bytes(name: &str, data: &[u8], keep_channels: bool) -> Result<DecodedAudio> {
    if data.is_empty() {
        return Err(Error::input(name, "empty input (0 bytes)"));
    }
    let mut collect = Collect::default();
    let sink: &mut dyn PcmSink = &mut collect;
    let info = if is_wav(data) {
        decode_wav_with_fallbacks(
            Path::new(name),
            Cursor::new(data),
            data.len() as u64,
            || Ok(Box::new(Cursor::new(data.to_vec()))),
            |failure, sink| ffmpeg_fallback_bytes(name, data, failure, keep_channels, sink),
            sink,
        )?
    } else {
        match decode_symphonia(Box::new(Cursor::new(data.to_vec())), None, sink) {
            Ok(info) => info,
            Err(err) => ffmpeg_fallback_bytes(name, data, err, keep_channels, sink)?,
        }
    };
    finish(Path::new(name), collect.into_audio(Path::new(name), info)?)
}

/// The ffmpeg fallback for bytes held in memory.
fn ffmpeg_fallback_bytes(
    name: &str,
    data: &[u8],
    failure: SymphoniaFailure,
    keep_channels: bool,
    sink: &mut dyn PcmSink,
) -> Result<DecodeInfo> {
    if ffmpeg_binary().is_none() {
        // Only the message is wanted; no temp file needed.
        return ffmpeg_fallback(
            Path::new(name),
            FfmpegInput::File(Path::new(name)),
            failure,
            keep_channels,
            sink,
        );
    }
    // ffmpeg needs a seekable input for many containers (mp4): give it a file.
    let mut tmp = tempfile::NamedTempFile::new()
        .map_err(|e| Error::input(name, format!("cannot create temp file: {e}")))?;
    std::io::Write::write_all(&mut tmp, data)
        .map_err(|e| Error::input(name, format!("cannot write temp file: {e}")))?;
    ffmpeg_fallback(
        Path::new(name),
        FfmpegInput::File(tmp.path()),
        failure,
        keep_channels,
        sink,
    )
}

/// Decodes a WAV with hound. A WAV variant hound cannot read (another codec such as A-law,
/// u-law or ADPCM, 64-bit float, RF64, or a header written by a streaming encoder that did
/// not know the length) goes to symphonia (over a fresh source from `reopen`), then to
/// `ffmpeg`. When neither can decode it, hound's reason is the most precise one to report.
fn decode_wav_with_fallbacks<R: Read + Seek>(
    display: &Path,
    reader: R,
    total_bytes: u64,
    reopen: impl FnOnce() -> Result<Box<dyn MediaSource>>,
    ffmpeg: impl FnOnce(SymphoniaFailure, &mut dyn PcmSink) -> Result<DecodeInfo>,
    sink: &mut dyn PcmSink,
) -> Result<DecodeInfo> {
    let (hound_reason, unsupported_encoding) = match decode_wav(display, reader, total_bytes, sink)
    {
        Ok(info) => return Ok(info),
        Err(WavFailure::Fatal(e)) => return Err(e),
        Err(WavFailure::NotForHound { reason, encoding }) => (reason, encoding),
    };
    match decode_symphonia(reopen()?, Some("wav"), sink) {
        Ok(info) => Ok(info),
        Err(SymphoniaFailure::Invalid(reason)) => Err(Error::input(display, reason)),
        // The codec is known but not built in: the fallback's message names it.
        Err(failure @ SymphoniaFailure::UnsupportedCodec(_)) => ffmpeg(failure, sink),
        Err(failure) => {
            let have_ffmpeg = ffmpeg_binary().is_some();
            ffmpeg(failure, sink).map_err(|_| {
                let hint = if unsupported_encoding && !have_ffmpeg {
                    "; install ffmpeg (e.g. `apt install ffmpeg`) to decode it"
                } else {
                    ""
                };
                Error::input(display, format!("{hound_reason}{hint}"))
            })
        }
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

pub(super) fn is_wav(head: &[u8]) -> bool {
    head.len() >= 12
        && (&head[0..4] == b"RIFF" || &head[0..4] == b"RF64")
        && &head[8..12] == b"WAVE"
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Validates what every decoder produced: channels, samples, finite values.
fn finish(path: &Path, mut audio: DecodedAudio) -> Result<DecodedAudio> {
    if audio.channels.is_empty() {
        return Err(Error::input(path, "audio has zero channels"));
    }
    if audio.sample_rate == 0 {
        return Err(Error::input(path, "audio has a sample rate of 0 Hz"));
    }
    let frames = audio.channels.iter().map(Vec::len).min().unwrap_or(0);
    if frames == 0 {
        return Err(Error::input(path, "contains no audio samples"));
    }
    let mut non_finite = 0usize;
    for channel in &mut audio.channels {
        channel.truncate(frames);
        for s in channel.iter_mut() {
            if !s.is_finite() {
                *s = 0.0;
                non_finite += 1;
            }
        }
    }
    if non_finite > 0 {
        audio.warnings.push(format!(
            "{}: replaced {non_finite} NaN or infinite samples with silence",
            path.display()
        ));
    }
    Ok(audio)
}

/// Why hound did not decode a WAV file.
enum WavFailure {
    /// The file is broken: report this error.
    Fatal(Error),
    /// A WAV variant hound does not read, or a header it rejects that other decoders may
    /// accept: try them, and report `reason` if they fail too. `encoding` is set when the
    /// header is fine but its encoding is one hound lacks (so ffmpeg may well decode it).
    NotForHound {
        /// One-line reason.
        reason: String,
        /// The encoding, not the header, is what hound cannot read.
        encoding: bool,
    },
}

fn decode_wav<R: Read + Seek>(
    path: &Path,
    reader: R,
    total_bytes: u64,
    sink: &mut dyn PcmSink,
) -> std::result::Result<DecodeInfo, WavFailure> {
    let fatal = |reason: String| WavFailure::Fatal(Error::input(path, reason));
    let mut wav = hound::WavReader::new(reader).map_err(|e| match e {
        // hound reports a short read as `ErrorKind::Other` ("Failed to read enough bytes.").
        hound::Error::IoError(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof
                || io.to_string().contains("Failed to read enough bytes") =>
        {
            // hound also stops here on a valid file whose odd-sized chunk is followed by its
            // pad byte (RIFF's rule, which hound does not follow): symphonia reads those.
            WavFailure::NotForHound {
                reason: format!("truncated WAV header (the file has only {total_bytes} bytes)"),
                encoding: false,
            }
        }
        hound::Error::IoError(io) => fatal(io_reason(&io)),
        hound::Error::Unsupported => WavFailure::NotForHound {
            reason: "unsupported WAV encoding (not PCM or IEEE float)".into(),
            encoding: true,
        },
        // `is_wav` let the file through, so a missing RIFF tag means an RF64 header.
        hound::Error::FormatError("no RIFF tag found") => WavFailure::NotForHound {
            reason: "RF64 (64-bit WAV) is not supported by the built-in decoders".into(),
            encoding: true,
        },
        hound::Error::FormatError(reason) => WavFailure::NotForHound {
            reason: format!("invalid WAV header: {reason}"),
            encoding: false,
        },
        other => WavFailure::NotForHound {
            reason: format!("invalid WAV file: {other}"),
            encoding: false,
        },
    })?;
    let spec = wav.spec();
    if spec.channels == 0 {
        return Err(fatal("WAV header declares zero channels".into()));
    }
    if spec.channels > 32 {
        return Err(fatal(format!(
            "WAV header declares {} channels",
            spec.channels
        )));
    }
    if let Some(reason) = super::bad_rate(spec.sample_rate) {
        return Err(fatal(reason));
    }
    let bytes_per_sample = u64::from(spec.bits_per_sample).div_ceil(8).max(1);
    let claimed_bytes = u64::from(wav.len()) * bytes_per_sample;
    // A header that promises more data than the file holds is corrupt; trusting it would
    // mean allocating gigabytes for a few kilobytes of audio.
    if claimed_bytes > total_bytes {
        // Except for the length 2^32-1 that streaming writers (ffmpeg to a pipe) put in
        // because they cannot know it: symphonia reads such files to their end.
        if claimed_bytes == u64::from(u32::MAX) {
            return Err(WavFailure::NotForHound {
                reason: "WAV header of unknown length (written by a streaming encoder)".into(),
                encoding: false,
            });
        }
        return Err(fatal(format!(
            "WAV header claims {claimed_bytes} bytes of audio data but the file holds only {total_bytes} bytes (truncated or corrupt)"
        )));
    }
    let channels = usize::from(spec.channels);
    let read_error = |e: hound::Error| fatal(format!("cannot read WAV samples: {e}"));
    // Blocks of about 4096 frames: large enough to be cheap, small enough to stream.
    let block_len = 4096 * channels;
    let mut block: Vec<f32> = Vec::with_capacity(block_len);
    let flush = |block: &mut Vec<f32>, sink: &mut dyn PcmSink| {
        let go_on = block.is_empty() || sink.block(block, channels, spec.sample_rate);
        block.clear();
        go_on
    };
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            for s in wav.samples::<f32>() {
                block.push(s.map_err(read_error)?);
                if block.len() == block_len && !flush(&mut block, sink) {
                    break;
                }
            }
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for s in wav.samples::<i32>() {
                block.push(s.map_err(read_error)? as f32 * scale);
                if block.len() == block_len && !flush(&mut block, sink) {
                    break;
                }
            }
        }
        (format, bits) => {
            return Err(WavFailure::NotForHound {
                reason: format!("unsupported WAV sample format: {bits}-bit {format:?}"),
                encoding: true,
            })
        }
    }
    // A trailing partial frame (truncated data) is dropped, as hound's reader would.
    block.truncate(block.len() / channels * channels);
    flush(&mut block, sink);
    Ok(DecodeInfo {
        source_channels: channels,
        codec: format!(
            "pcm_{}{}",
            if spec.sample_format == hound::SampleFormat::Float {
                "f"
            } else {
                "s"
            },
            spec.bits_per_sample
        ),
        warnings: Vec::new(),
    })
}

/// Why symphonia could not decode a file, so the fallback can say something precise.
#[derive(Debug)]
pub(super) enum SymphoniaFailure {
    /// No format reader recognised the container.
    UnknownFormat,
    /// The container was read but its codec has no decoder here.
    UnsupportedCodec(String),
    /// The data is corrupt.
    Corrupt(String),
    /// The header is impossible (a forged sample rate): no other decoder is tried.
    Invalid(String),
}

fn codec_name(codec: AudioCodecId) -> String {
    use symphonia::core::codecs::audio::well_known::*;
    let known = [
        (CODEC_ID_OPUS, "Opus"),
        (CODEC_ID_SPEEX, "Speex"),
        (CODEC_ID_AAC, "AAC"),
        (CODEC_ID_EAC3, "E-AC-3"),
        (CODEC_ID_AC4, "AC-4"),
        (CODEC_ID_DCA, "DTS"),
        (CODEC_ID_WMA, "WMA"),
        (CODEC_ID_WAVPACK, "WavPack"),
        (CODEC_ID_MONKEYS_AUDIO, "Monkey's Audio"),
        (CODEC_ID_TTA, "TTA"),
        (CODEC_ID_MUSEPACK, "Musepack"),
        (CODEC_ID_ATRAC3, "ATRAC3"),
        (CODEC_ID_ATRAC3PLUS, "ATRAC3plus"),
        (CODEC_ID_ADPCM_G722, "G.722"),
        (CODEC_ID_ADPCM_G726, "G.726"),
    ];
    if let Some((_, name)) = known.iter().find(|(c, _)| *c == codec) {
        return (*name).to_string();
    }
    match symphonia::default::get_codecs().get_audio_decoder(codec) {
        Some(registered) => registered.codec.info.short_name.to_string(),
        None => format!("codec {codec}"),
    }
}

thread_local! {
    /// Set while symphonia runs on this thread: its panics are caught and reported as errors.
    static IN_SYMPHONIA: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside a decoder whose panics verbatim catches and reports as
/// errors. A program's panic hook can stay silent then (the `verbatim` binary's does); the
/// library installs no hook of its own.
pub fn inside_guarded_decoder() -> bool {
    IN_SYMPHONIA.with(|flag| flag.get())
}

/// Runs symphonia code with its panics caught.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    let was_inside = IN_SYMPHONIA.with(|flag| flag.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_SYMPHONIA.with(|flag| flag.set(was_inside));
    result
}

/// Decodes with symphonia, turning a panic inside it into [`SymphoniaFailure::Corrupt`].
///
/// symphonia trusts some header fields in arithmetic (e.g. a WAVE_FORMAT_EXTENSIBLE
/// header declaring 102 channels overflows a shift in `fix_channel_mask`), so a malformed file
/// can panic it. One bad input must not abort a batch: the panic is caught (the binary's panic
/// hook keeps its message off stderr, see [`inside_guarded_decoder`]).
pub(super) fn decode_symphonia(
    source: Box<dyn MediaSource + '_>,
    extension: Option<&str>,
    sink: &mut dyn PcmSink,
) -> std::result::Result<DecodeInfo, SymphoniaFailure> {
    let result = quietly(|| decode_symphonia_unguarded(source, extension, sink));
    result.unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .map(|s| s.lines().next().unwrap_or_default().to_string())
            .unwrap_or_default();
        Err(SymphoniaFailure::Corrupt(if detail.is_empty() {
            "malformed header or data (the decoder gave up)".into()
        } else {
            format!("malformed header or data (the decoder gave up: {detail})")
        }))
    })
}

fn decode_symphonia_unguarded(
    source: Box<dyn MediaSource + '_>,
    extension: Option<&str>,
    sink: &mut dyn PcmSink,
) -> std::result::Result<DecodeInfo, SymphoniaFailure> {
    let stream = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymphoniaError::Unsupported(_) => SymphoniaFailure::UnknownFormat,
            // The probe (or the reader it picked) ran off the end of the data before finding
            // a complete stream header; symphonia's own text is just "end of stream".
            SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                SymphoniaFailure::Corrupt(
                    "the file ends before any audio stream was found (truncated, or not audio)"
                        .into(),
                )
            }
            other => SymphoniaFailure::Corrupt(other.to_string()),
        })?;
    let mut format = probed;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| SymphoniaFailure::Corrupt("no audio track".into()))?;
    let track_id = track.id;
    let announced_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .cloned()
        .ok_or_else(|| SymphoniaFailure::Corrupt("no audio track".into()))?;
    if let Some(reason) = params.sample_rate.and_then(super::bad_rate) {
        return Err(SymphoniaFailure::Invalid(reason));
    }
    if params.channels.as_ref().map(|c| c.count()) == Some(0) {
        return Err(SymphoniaFailure::Corrupt(
            "audio track has zero channels".into(),
        ));
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(_) => {
                SymphoniaFailure::UnsupportedCodec(codec_name(params.codec))
            }
            other => SymphoniaFailure::Corrupt(other.to_string()),
        })?;

    let mut n_channels_seen = 0usize;
    let mut bad_packets = 0usize;
    let mut good_packets = 0usize;
    let mut frames_decoded = 0u64;
    // Why decoding stopped before the end of the stream, when it did.
    let mut cut_short: Option<String> = None;
    let mut sink_stopped = false;
    let mut interleaved: Vec<f32> = Vec::new();
    // A PCM packet shorter than its duration says is only right as the file's last one
    // (the data ends mid-packet): it waits here and is decoded once the stream has ended.
    let mut short_tail: Option<symphonia::core::packet::Packet> = None;
    let mut ended = false;
    loop {
        let packet = if ended {
            match short_tail.take() {
                Some(p) => p,
                None => break,
            }
        } else {
            match format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    ended = true;
                    continue;
                }
                Err(SymphoniaError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    ended = true;
                    continue;
                }
                Err(SymphoniaError::ResetRequired) => {
                    ended = true;
                    continue;
                }
                Err(e) => {
                    if good_packets > 0 {
                        // A damaged or truncated tail: keep what decoded, and say so.
                        cut_short = Some(e.to_string());
                        ended = true;
                        continue;
                    }
                    return Err(SymphoniaFailure::Corrupt(e.to_string()));
                }
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        if let (false, Some(frame)) = (ended, pcm_frame_bytes(&params)) {
            // symphonia's WAV reader cuts packets by the header's block size and its PCM
            // decoder reads by channel count and sample width; when the two disagree (a
            // crafted header) it decodes noise, so stop here.
            let len = packet.data.len() as u64;
            let dur = packet.dur.get();
            let full = dur.saturating_mul(frame);
            if short_tail.is_some() || (len != full && (len > full || !len.is_multiple_of(frame))) {
                return Err(SymphoniaFailure::Corrupt(format!(
                    "inconsistent header: {} bytes per frame for {} channels of {}-byte samples",
                    len / dur.max(1),
                    params.channels.as_ref().map_or(0, |c| c.count()),
                    frame
                        / params
                            .channels
                            .as_ref()
                            .map_or(1, |c| c.count().max(1) as u64),
                )));
            }
            if len < full {
                short_tail = Some(packet);
                continue;
            }
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymphoniaError::DecodeError(_)) => {
                bad_packets += 1;
                continue;
            }
            Err(SymphoniaError::Unsupported(_)) => {
                return Err(SymphoniaFailure::UnsupportedCodec(codec_name(params.codec)))
            }
            Err(SymphoniaError::IoError(_)) => break,
            Err(e) => return Err(SymphoniaFailure::Corrupt(e.to_string())),
        };
        let spec = decoded.spec().clone();
        let n_channels = spec.channels().count();
        if n_channels == 0 {
            return Err(SymphoniaFailure::Corrupt("audio has zero channels".into()));
        }
        if n_channels_seen == 0 {
            n_channels_seen = n_channels;
        } else if n_channels_seen != n_channels {
            return Err(SymphoniaFailure::Corrupt(
                "channel count changes mid-stream".into(),
            ));
        }
        frames_decoded += decoded.frames() as u64;
        decoded.copy_to_vec_interleaved(&mut interleaved);
        good_packets += 1;
        if !sink.block(&interleaved, n_channels, spec.rate()) {
            sink_stopped = true;
            break;
        }
    }
    if good_packets == 0 {
        return Err(SymphoniaFailure::Corrupt(if bad_packets > 0 {
            format!("none of its {bad_packets} audio packets could be decoded")
        } else {
            "contains no audio packets".into()
        }));
    }
    let mut warnings = Vec::new();
    if bad_packets > 0 {
        warnings.push(format!("skipped {bad_packets} undecodable audio packets"));
    }
    if let (false, Some(rate)) = (sink_stopped, params.sample_rate.filter(|&r| r > 0)) {
        let seconds = |frames: u64| frames as f64 / f64::from(rate);
        let announced = announced_frames.unwrap_or(0);
        if let Some(reason) = cut_short {
            warnings.push(format!(
                "decoding stopped at {:.1} s ({reason}); the rest of the file is unreadable (truncated or damaged)",
                seconds(frames_decoded)
            ));
        } else if announced > frames_decoded
            && announced - frames_decoded > (u64::from(rate) / 10).max(announced / 100)
        {
            warnings.push(format!(
                "the audio ends at {:.1} s but the header announces {:.1} s; the file is probably truncated",
                seconds(frames_decoded),
                seconds(announced)
            ));
        }
    }
    Ok(DecodeInfo {
        source_channels: n_channels_seen,
        codec: codec_name(params.codec),
        warnings,
    })
}

/// Bytes per interleaved frame for the PCM codecs symphonia decodes (channels x the codec's
/// sample width), `None` for compressed codecs.
fn pcm_frame_bytes(params: &AudioCodecParameters) -> Option<u64> {
    use symphonia::core::codecs::audio::well_known::*;
    let width = match params.codec {
        CODEC_ID_PCM_S8 | CODEC_ID_PCM_U8 | CODEC_ID_PCM_ALAW | CODEC_ID_PCM_MULAW => 1,
        CODEC_ID_PCM_S16LE | CODEC_ID_PCM_S16BE | CODEC_ID_PCM_U16LE | CODEC_ID_PCM_U16BE => 2,
        CODEC_ID_PCM_S24LE | CODEC_ID_PCM_S24BE | CODEC_ID_PCM_U24LE | CODEC_ID_PCM_U24BE => 3,
        CODEC_ID_PCM_S32LE | CODEC_ID_PCM_S32BE | CODEC_ID_PCM_U32LE | CODEC_ID_PCM_U32BE
        | CODEC_ID_PCM_F32LE | CODEC_ID_PCM_F32BE => 4,
        CODEC_ID_PCM_F64LE | CODEC_ID_PCM_F64BE => 8,
        _ => return None,
    };
    Some(width * params.channels.as_ref()?.count() as u64)
}

/// The ffmpeg binary to fall back on: `$VERBATIM_FFMPEG` if set (empty disables the fallback),
/// else the first executable `ffmpeg` on `PATH`.
pub fn ffmpeg_binary() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("VERBATIM_FFMPEG") {
        let p = PathBuf::from(explicit);
        return (!p.as_os_str().is_empty() && p.is_file()).then_some(p);
    }
    // `which_global` searches `PATH` as it is, like a shell, without resolving entries
    // against the working directory.
    which::which_global("ffmpeg").ok()
}

/// What ffmpeg reads: a file, or a stream fed to its standard input.
pub(super) enum FfmpegInput<'a> {
    File(&'a Path),
    Pipe(&'a mut (dyn Read + Send + Sync)),
}

pub(super) fn ffmpeg_fallback(
    display: &Path,
    input: FfmpegInput<'_>,
    failure: SymphoniaFailure,
    keep_channels: bool,
    sink: &mut dyn PcmSink,
) -> Result<DecodeInfo> {
    if let SymphoniaFailure::Invalid(reason) = failure {
        return Err(Error::input(display, reason));
    }
    let Some(ffmpeg) = ffmpeg_binary() else {
        return Err(Error::input(
            display,
            match failure {
                SymphoniaFailure::UnsupportedCodec(codec) => format!(
                    "{codec} audio is not supported by the built-in decoders; install ffmpeg (e.g. `apt install ffmpeg`) to decode it"
                ),
                SymphoniaFailure::UnknownFormat => "not a recognised audio or video format (installing ffmpeg adds more formats)".into(),
                SymphoniaFailure::Corrupt(reason) | SymphoniaFailure::Invalid(reason) => format!("corrupt or unreadable audio: {reason}"),
            },
        ));
    };
    let (file, mut feed) = match input {
        FfmpegInput::File(file) => (Some(file), None),
        FfmpegInput::Pipe(reader) => (None, Some(reader)),
    };
    let channels = match file {
        Some(file) if keep_channels => probe_channels(&ffmpeg, file).unwrap_or(1),
        _ => 1,
    };
    let mut command = Command::new(&ffmpeg);
    command.args(["-hide_banner", "-loglevel", "error", "-i"]);
    match file {
        Some(file) => command.arg(file).stdin(Stdio::null()),
        None => command.arg("pipe:0").stdin(Stdio::piped()),
    };
    let mut child = command
        .args(["-vn", "-f", "f32le", "-acodec", "pcm_f32le", "-ar"])
        .arg(super::WHISPER_SAMPLE_RATE.to_string())
        .arg("-ac")
        .arg(channels.to_string())
        .arg("-")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::input(display, format!("cannot run {}: {e}", ffmpeg.display())))?;
    let stdin_pipe = child.stdin.take();
    std::thread::scope(|scope| {
        if let (Some(mut to_ffmpeg), Some(reader)) = (stdin_pipe, feed.take()) {
            // Fed on its own thread: ffmpeg reads its input while its output is read here.
            // It ends at the input's end, or when ffmpeg exits (a broken pipe).
            scope.spawn(move || {
                let _ = std::io::copy(reader, &mut to_ffmpeg);
            });
        }
        read_ffmpeg(display, &mut child, failure, channels, sink)
    })
}

/// Reads ffmpeg's PCM output into `sink` and turns its exit into a result.
fn read_ffmpeg(
    display: &Path,
    child: &mut std::process::Child,
    failure: SymphoniaFailure,
    channels: usize,
    sink: &mut dyn PcmSink,
) -> Result<DecodeInfo> {
    // stderr is drained on its own thread so a chatty ffmpeg never blocks on a full pipe.
    let mut stderr_pipe = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stderr_pipe.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    // Read the PCM a block at a time: the file is never in memory whole.
    let mut stdout = child.stdout.take();
    let frame_bytes = 4 * channels;
    let mut bytes = vec![0u8; 16_384 * frame_bytes];
    let mut samples: Vec<f32> = Vec::with_capacity(bytes.len() / 4);
    let mut frames_out = 0usize;
    let mut stopped = false;
    if let Some(pipe) = stdout.as_mut() {
        let mut filled = 0usize;
        loop {
            let n = match pipe.read(&mut bytes[filled..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            filled += n;
            let whole = filled / frame_bytes * frame_bytes;
            if whole == 0 {
                continue;
            }
            samples.clear();
            samples.extend(
                bytes[..whole]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            frames_out += whole / frame_bytes;
            bytes.copy_within(whole..filled, 0);
            filled -= whole;
            if !sink.block(&samples, channels, super::WHISPER_SAMPLE_RATE) {
                stopped = true;
                break;
            }
        }
    }
    drop(stdout);
    if stopped {
        let _ = child.kill();
    }
    let status = child.wait();
    let stderr_text = stderr_reader.join().unwrap_or_default();
    let detail = stderr_text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string());
    let succeeded = status.map(|s| s.success()).unwrap_or(false);
    if frames_out == 0 && !stopped {
        let reason = match (&failure, detail) {
            (SymphoniaFailure::UnknownFormat, _) => {
                "not a recognised audio or video format".to_string()
            }
            (SymphoniaFailure::UnsupportedCodec(c), Some(d)) => {
                format!("cannot decode {c} audio (ffmpeg: {d})")
            }
            (SymphoniaFailure::UnsupportedCodec(c), None) => format!("cannot decode {c} audio"),
            (SymphoniaFailure::Corrupt(r) | SymphoniaFailure::Invalid(r), _) => {
                format!("corrupt or unreadable audio: {r}")
            }
        };
        return Err(Error::input(display, reason));
    }
    let mut warnings = Vec::new();
    if !succeeded && !stopped {
        // Audio came out, then ffmpeg failed (a damaged tail): keep what decoded, say so.
        warnings.push(format!(
            "ffmpeg stopped early{}; the audio after that point is missing",
            detail.map(|d| format!(" ({d})")).unwrap_or_default()
        ));
    }
    let codec = match failure {
        SymphoniaFailure::UnsupportedCodec(c) => format!("{c} (ffmpeg)"),
        _ => "ffmpeg".to_string(),
    };
    Ok(DecodeInfo {
        source_channels: channels,
        codec,
        warnings,
    })
}

/// Asks ffprobe (next to ffmpeg) how many channels the first audio stream has.
/// Whether a stream whose first bytes are in `head` (also written to `file`, which holds
/// only them so far) is audio or video some decoder here reads: a WAV or ISO-BMFF (MP4, M4A,
/// MOV) header, a container symphonia recognises, or one ffprobe finds an audio stream in.
/// Lets standard input refuse garbage after its first block instead of at its end.
pub fn looks_like_media(head: &[u8], file: &Path) -> bool {
    // MP4 keeps its index anywhere, often at the end: its header is enough.
    if is_wav(head) || head.get(4..8) == Some(b"ftyp") {
        return true;
    }
    let cursor = Box::new(Cursor::new(head.to_vec()));
    let recognised = quietly(|| {
        symphonia::default::get_probe()
            .probe(
                &Hint::new(),
                MediaSourceStream::new(cursor, Default::default()),
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .is_ok()
    })
    .unwrap_or(false);
    if recognised {
        return true;
    }
    let Some(ffmpeg) = ffmpeg_binary() else {
        return false;
    };
    Command::new(ffmpeg.with_file_name("ffprobe"))
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("audio")
        })
}

fn probe_channels(ffmpeg: &Path, file: &Path) -> Option<usize> {
    let ffprobe = ffmpeg.with_file_name("ffprobe");
    let out = Command::new(ffprobe)
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=channels",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    (1..=32).contains(&n).then_some(n)
}

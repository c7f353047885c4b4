//! Audio input devices (microphones): listing them with their default format and choosing one
//! by index or name for live capture.
//!
//! Everything goes through cpal's default host, which on Linux is ALSA: with PulseAudio or
//! PipeWire running, ALSA's `default` device routes to the sound server's default source.
//!
//! Indices are positions in the host's device list, usable or not, so they can be worked out
//! without opening any device: [`open`] with the default or a name opens only the device chosen.
//! That matters because ALSA lists plugins (`jack`, `oss`, ...) whose libraries print to stderr
//! when they fail to open, and live dictation should not start with that noise. [`list`] opens
//! every device to read its format and leaves out those that cannot record, so its indices can
//! have gaps.

use cpal::traits::{DeviceTrait, HostTrait};
use serde::Serialize;

use crate::error::{Error, Result};

/// One input device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// Position in the host's device list; `open(Some("3"))` opens the device with index 3.
    pub index: usize,
    /// The name to select the device with: the ALSA PCM name on Linux (`default`, `pulse`,
    /// `hw:CARD=PCH,DEV=0`), the device's own name on other hosts.
    pub name: String,
    /// Human-readable description (`PulseAudio Sound Server`, `HDA Intel PCH, ALC892 Analog`).
    pub description: String,
    /// This is the host's default input device.
    pub is_default: bool,
    /// Sample format of the default input configuration: `f32`, `i16`, `i32`, ...
    pub sample_format: String,
    /// Sample rate of the default input configuration in Hz.
    pub sample_rate: u32,
    /// Channel count of the default input configuration.
    pub channels: u16,
}

/// Every usable input device of the default host, the default one marked.
///
/// Devices whose default input configuration cannot be read are left out: they cannot record (a
/// PCM of a missing card, a sound-server plugin whose server is not running), and listing them
/// would only offer devices that fail when chosen. No usable device at all is an
/// [`Error::Device`] that says what to check, so callers need no special case for it.
pub fn list() -> Result<Vec<DeviceInfo>> {
    let host = Host::new()?;
    let mut usable = Vec::new();
    let mut default_failure = None;
    for candidate in host.candidates {
        let is_default = candidate.is_default;
        match candidate.probe() {
            Ok((_, info)) => usable.push(info),
            Err(reason) if is_default => default_failure = Some(reason),
            Err(_) => {}
        }
    }
    if usable.is_empty() {
        return Err(no_device(host.name, default_failure.as_deref()));
    }
    Ok(usable)
}

/// The device for `spec`: `None` = the default input; `"3"` = index from [`list`]; else the exact
/// name, then a unique case-insensitive substring of the name (or, when no name contains it, of
/// the description). Only the chosen device is opened, unless the spec is ambiguous or fails.
pub fn open(spec: Option<&str>) -> Result<(cpal::Device, DeviceInfo)> {
    let Host {
        name: host_name,
        mut candidates,
    } = Host::new()?;
    let spec = spec.map(str::trim).filter(|s| !s.is_empty());
    let chosen = match spec {
        None => candidates.iter().position(|c| c.is_default),
        Some(spec) => Some(find(&candidates, spec)?),
    };
    let Some(chosen) = chosen else {
        // Only hosts without any default input get here (ALSA always offers `default`).
        return match usable(candidates) {
            (list, _) if list.is_empty() => Err(no_device(host_name, None)),
            (list, _) => Err(Error::Device(format!(
                "there is no default audio input; choose one with --device: {}",
                labels(&list)
            ))),
        };
    };
    let candidate = candidates.swap_remove(chosen);
    let label = candidate.label();
    match candidate.probe() {
        Ok(found) => Ok(found),
        Err(reason) => {
            // Explain with what would work instead (this opens the other devices, but only on
            // the way to an error).
            let (others, _) = usable(candidates);
            match (spec, others.is_empty()) {
                (None, true) => Err(no_device(host_name, Some(&reason))),
                (None, false) => Err(Error::Device(format!(
                    "the default audio input cannot be opened ({reason}); choose one with \
                     --device: {}",
                    labels(&others)
                ))),
                (Some(_), true) => Err(Error::Device(format!(
                    "audio input {label} cannot be opened ({reason}), and no other input device \
                     works"
                ))),
                (Some(_), false) => Err(Error::Device(format!(
                    "audio input {label} cannot be opened ({reason}); available: {}",
                    labels(&others)
                ))),
            }
        }
    }
}

/// The position in `candidates` that `spec` selects, or an error listing what is available.
fn find(candidates: &[Candidate], spec: &str) -> Result<usize> {
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return match spec.parse::<usize>() {
            Ok(i) if i < candidates.len() => Ok(i),
            _ => Err(Error::Device(format!(
                "no input device with index {spec}; available: {}",
                available(candidates)
            ))),
        };
    }
    if let Some(i) = candidates.iter().position(|c| c.name == spec) {
        return Ok(i);
    }
    let needle = spec.to_lowercase();
    let by_name = matching(candidates, |c| c.name.to_lowercase().contains(&needle));
    let mut matches = if by_name.is_empty() {
        matching(candidates, |c| {
            c.description.to_lowercase().contains(&needle)
        })
    } else {
        by_name
    };
    if matches.len() > 1 {
        // Several names contain the spec: the devices that can actually record decide (ALSA
        // lists a card under several plugins, most of which cannot record).
        let working: Vec<usize> = matches
            .iter()
            .copied()
            .filter(|&i| candidates[i].config().is_ok())
            .collect();
        if !working.is_empty() {
            matches = working;
        }
    }
    match matches.as_slice() {
        [i] => Ok(*i),
        [] => Err(Error::Device(format!(
            "no input device matches '{spec}'; available: {}",
            available(candidates)
        ))),
        several => Err(Error::Device(format!(
            "'{spec}' matches several input devices: {}; give the index or the full name",
            several
                .iter()
                .map(|&i| candidates[i].label())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn matching(candidates: &[Candidate], pred: impl Fn(&Candidate) -> bool) -> Vec<usize> {
    (0..candidates.len())
        .filter(|&i| pred(&candidates[i]))
        .collect()
}

/// `0: default, 1: pulse`: the devices that can record, for error messages.
fn available(candidates: &[Candidate]) -> String {
    let list: Vec<String> = candidates
        .iter()
        .filter(|c| c.config().is_ok())
        .map(Candidate::label)
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// The devices of `candidates` that can record, and the default's failure if it cannot.
fn usable(candidates: Vec<Candidate>) -> (Vec<DeviceInfo>, Option<String>) {
    let mut list = Vec::new();
    let mut default_failure = None;
    for candidate in candidates {
        let is_default = candidate.is_default;
        match candidate.probe() {
            Ok((_, info)) => list.push(info),
            Err(reason) if is_default => default_failure = Some(reason),
            Err(_) => {}
        }
    }
    (list, default_failure)
}

fn labels(list: &[DeviceInfo]) -> String {
    list.iter()
        .map(|d| format!("{}: {}", d.index, d.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error for a machine without any usable input device.
fn no_device(host: &str, default_failure: Option<&str>) -> Error {
    let reason = default_failure
        .map(|r| format!("; default input: {r}"))
        .unwrap_or_default();
    Error::Device(format!(
        "no audio input device found (host {host}{reason}); is a microphone connected? Check \
         that it is plugged in and enabled, and that PulseAudio or PipeWire is running \
         (`pactl info`)"
    ))
}

/// The default host and its input devices, none of them opened yet.
struct Host {
    name: &'static str,
    candidates: Vec<Candidate>,
}

/// An input device as the host lists it.
struct Candidate {
    device: cpal::Device,
    index: usize,
    name: String,
    description: String,
    is_default: bool,
}

impl Host {
    fn new() -> Result<Host> {
        let host = cpal::default_host();
        let name = host.id().name();
        let is_alsa = name == "ALSA";
        let default = host.default_input_device();
        let default_id = default.as_ref().and_then(|d| d.id().ok());

        let mut devices: Vec<cpal::Device> = host
            .input_devices()
            .map_err(|e| {
                Error::Device(format!(
                    "cannot list audio input devices (host {name}): {e}"
                ))
            })?
            .collect();
        // ALSA's `default` appears in the device list only when the configuration gives it a
        // hint (PulseAudio's does); cpal always offers it as the default input, so make sure it
        // is listed, first, as the device most users want.
        if let Some(default) = default {
            let listed = default_id.is_some()
                && devices
                    .iter()
                    .any(|d| d.id().ok().as_ref() == default_id.as_ref());
            if !listed {
                devices.insert(0, default);
            }
        }

        let mut candidates = Vec::new();
        for device in devices {
            let id = device.id().ok();
            let is_default = id.is_some() && id == default_id;
            // ALSA's `null` PCM "records" endless silence; it is no microphone, and offering it
            // would hide the "no input device" case behind a device that hears nothing.
            if is_alsa && !is_default && id.as_ref().is_some_and(|id| id.id() == "null") {
                continue;
            }
            let description = device
                .description()
                .map(|d| d.name().to_string())
                .unwrap_or_default();
            let name = match &id {
                // ALSA's PCM names (`default`, `hw:CARD=PCH,DEV=0`) are unique and what ALSA
                // users know; its descriptions repeat the card's name for every PCM of the card.
                Some(id) if is_alsa => id.id().to_string(),
                _ if !description.is_empty() => description.clone(),
                Some(id) => id.id().to_string(),
                None => device.to_string(),
            };
            candidates.push(Candidate {
                device,
                index: candidates.len(),
                name,
                description,
                is_default,
            });
        }
        Ok(Host { name, candidates })
    }
}

impl Candidate {
    /// `3: hw:CARD=USB,DEV=0`.
    fn label(&self) -> String {
        format!("{}: {}", self.index, self.name)
    }

    /// Opens the device to read its default input configuration; the error is one line.
    fn config(&self) -> std::result::Result<cpal::SupportedStreamConfig, String> {
        // alsa-lib prints every failed open to stderr (`ALSA lib pcm.c:2666:... Unknown PCM`);
        // probing plugins that cannot work here is expected, so its messages go to a buffer
        // instead, and explain the failure better than cpal's generic "device not available".
        let alsa_log = AlsaLog::capture();
        self.device.default_input_config().map_err(|e| {
            alsa_log
                .last_line()
                .unwrap_or_else(|| one_line(e.to_string().trim_end_matches('.')))
        })
    }

    /// The device with its default format, or why it cannot record.
    fn probe(self) -> std::result::Result<(cpal::Device, DeviceInfo), String> {
        let config = self.config()?;
        let info = DeviceInfo {
            index: self.index,
            name: self.name,
            description: self.description,
            is_default: self.is_default,
            sample_format: config.sample_format().to_string(),
            sample_rate: config.sample_rate(),
            channels: config.channels(),
        };
        Ok((self.device, info))
    }
}

/// alsa-lib's error messages on this thread, captured instead of printed.
struct AlsaLog {
    #[cfg(any(
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "netbsd"
    ))]
    output: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>,
}

impl AlsaLog {
    /// Sends this thread's alsa-lib messages to a fresh buffer (on other platforms: nothing).
    ///
    /// The handler stays installed afterwards: later alsa-lib messages on this thread collect in
    /// the buffer instead of cluttering the terminal; cpal's stream threads are not affected.
    fn capture() -> AlsaLog {
        AlsaLog {
            #[cfg(any(
                target_os = "linux",
                target_os = "dragonfly",
                target_os = "freebsd",
                target_os = "netbsd"
            ))]
            output: alsa::Output::local_error_handler().ok(),
        }
    }

    /// The last message captured since [`AlsaLog::capture`], e.g. `snd_pcm_open_noupdate:
    /// Unknown PCM default`.
    fn last_line(&self) -> Option<String> {
        #[cfg(any(
            target_os = "linux",
            target_os = "dragonfly",
            target_os = "freebsd",
            target_os = "netbsd"
        ))]
        if let Some(output) = &self.output {
            let text = output.borrow().to_string();
            return text
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .map(one_line);
        }
        None
    }
}

/// Backend messages can span lines; errors are one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

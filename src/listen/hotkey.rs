//! Push-to-talk through the kernel's input devices (evdev): the daemon reads the key events of
//! every keyboard in `/dev/input`, so a held key works on any desktop, Wayland included, and on
//! a text console. Reading them needs membership of the `input` group.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable naming another directory of event devices (tests, unusual set-ups).
pub const INPUT_DIR_VAR: &str = "VERBATIM_INPUT_DIR";

/// `EV_KEY` in `linux/input-event-codes.h`.
const EV_KEY: u16 = 1;

/// Key names and their codes (`linux/input-event-codes.h`): keys that type nothing, fit to hold.
const KEYS: [(&str, u16); 36] = [
    ("f1", 59),
    ("f2", 60),
    ("f3", 61),
    ("f4", 62),
    ("f5", 63),
    ("f6", 64),
    ("f7", 65),
    ("f8", 66),
    ("f9", 67),
    ("f10", 68),
    ("f11", 87),
    ("f12", 88),
    ("f13", 183),
    ("f14", 184),
    ("f15", 185),
    ("f16", 186),
    ("f17", 187),
    ("f18", 188),
    ("f19", 189),
    ("f20", 190),
    ("rightctrl", 97),
    ("rightalt", 100),
    ("rightshift", 54),
    ("leftctrl", 29),
    ("leftalt", 56),
    ("leftshift", 42),
    ("leftmeta", 125),
    ("rightmeta", 126),
    ("capslock", 58),
    ("scrolllock", 70),
    ("pause", 119),
    ("insert", 110),
    ("compose", 127),
    ("menu", 139),
    ("sysrq", 99),
    ("numlock", 69),
];

/// The code of a key name (`F12`, `KEY_RIGHTCTRL`, `rightctrl`, or a number).
pub fn parse_key(name: &str) -> std::result::Result<u16, String> {
    let n = name.trim().to_ascii_lowercase();
    let n = n.strip_prefix("key_").unwrap_or(&n);
    if let Ok(code) = n.parse::<u16>() {
        if (1..768).contains(&code) {
            return Ok(code);
        }
    }
    KEYS.iter()
        .find(|(k, _)| *k == n)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            format!(
                "unknown key '{name}' (use one of {}, or a key code from linux/input-event-codes.h)",
                KEYS.iter().map(|(k, _)| k.to_uppercase()).collect::<Vec<_>>().join(", ")
            )
        })
}

/// The event devices, open, waiting for [`Hotkey::watch`].
#[derive(Debug)]
pub struct Hotkey {
    code: u16,
    devices: Vec<(PathBuf, File)>,
}

impl Hotkey {
    /// Opens every event device of `/dev/input` (or `$VERBATIM_INPUT_DIR`) that can be read.
    /// None at all is an error that says how to get access.
    pub fn open(code: u16) -> Result<Hotkey> {
        let dir = std::env::var_os(INPUT_DIR_VAR)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/input"));
        Hotkey::open_in(&dir, code)
    }

    fn open_in(dir: &Path, code: u16) -> Result<Hotkey> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("event"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let mut devices = Vec::new();
        let mut denied = 0;
        for path in names.iter() {
            match File::open(path) {
                Ok(f) => devices.push((path.clone(), f)),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => denied += 1,
                Err(_) => {}
            }
        }
        if devices.is_empty() {
            let why = if denied > 0 {
                format!(
                    "{denied} input devices in {} may not be read by you",
                    dir.display()
                )
            } else {
                format!("no input devices in {}", dir.display())
            };
            return Err(Error::Device(format!(
                "--hotkey cannot read the keyboard: {why}; join the `input` group (`sudo usermod -aG input $USER`, then log in again), or bind `verbatim listen toggle` to a key in your desktop instead"
            )));
        }
        Ok(Hotkey { code, devices })
    }

    /// How many devices are watched.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// Watches every device on its own thread, calling `on_key(true)` when the key goes down
    /// and `on_key(false)` when it comes up (auto-repeat ignored). A device that fails (a
    /// keyboard unplugged) is dropped; the others go on.
    pub fn watch<F>(self, on_key: F)
    where
        F: Fn(bool) + Send + Sync + 'static,
    {
        let on_key = std::sync::Arc::new(on_key);
        // struct input_event: a timeval (two longs), u16 type, u16 code, i32 value.
        let size = 2 * std::mem::size_of::<std::ffi::c_long>() + 8;
        for (_, mut file) in self.devices {
            let on_key = on_key.clone();
            let code = self.code;
            std::thread::spawn(move || {
                let mut buf = vec![0u8; size];
                while file.read_exact(&mut buf).is_ok() {
                    let at = size - 8;
                    let kind = u16::from_ne_bytes([buf[at], buf[at + 1]]);
                    let key = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]);
                    let value =
                        i32::from_ne_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
                    if kind == EV_KEY && key == code && value != 2 {
                        on_key(value == 1);
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `struct input_event` as the kernel writes it.
    fn encode_event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut out = vec![0u8; 2 * std::mem::size_of::<std::ffi::c_long>()];
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&code.to_ne_bytes());
        out.extend_from_slice(&value.to_ne_bytes());
        out
    }

    #[test]
    fn key_names() {
        assert_eq!(parse_key("F12"), Ok(88));
        assert_eq!(parse_key("KEY_RIGHTCTRL"), Ok(97));
        assert_eq!(parse_key("183"), Ok(183));
        assert!(parse_key("banana").unwrap_err().contains("F12"));
    }

    #[test]
    fn no_readable_device_says_how_to_get_access() {
        let dir = tempfile::tempdir().unwrap();
        let e = Hotkey::open_in(dir.path(), 88).unwrap_err().to_string();
        assert!(
            e.contains("no input devices") && e.contains("input` group"),
            "{e}"
        );
    }

    #[test]
    fn presses_and_releases_of_the_key_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("event3");
        let mut events = Vec::new();
        for (kind, code, value) in [(1, 30, 1), (1, 88, 1), (1, 88, 2), (0, 0, 0), (1, 88, 0)] {
            events.extend(encode_event(kind, code, value));
        }
        std::fs::write(&dev, events).unwrap();
        let hk = Hotkey::open_in(dir.path(), 88).unwrap();
        assert_eq!(hk.devices(), 1);
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        hk.watch(move |down| tx.lock().unwrap().send(down).unwrap());
        let got: Vec<bool> = rx.iter().take(2).collect();
        assert_eq!(got, vec![true, false]);
    }
}

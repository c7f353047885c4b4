//! The XDG base directories the config file, the model store and the dictation history live
//! under.

use std::path::PathBuf;

/// `$VAR` when set and not empty, else `$HOME/HOME_DEFAULT` (`.config`, `.cache`,
/// `.local/share`); `None` when neither is set.
pub fn base_dir(var: &str, home_default: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(home_default)))
}

//! Finding media files: directories (optionally recursive), explicit files, globs and lists.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Audio and video extensions looked for in directories (lower case, no dot).
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    // audio
    "wav", "flac", "mp3", "m4a", "aac", "ogg", "oga", "opus", "wma", "aif", "aiff", "caf", "mka",
    "amr", "ac3", "alac", // video
    "mp4", "m4v", "mkv", "webm", "mov", "avi", "wmv", "flv", "ts", "mts", "m2ts", "mpg", "mpeg",
    "3gp", "ogv", "vob",
];

/// How inputs are expanded into files.
#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// Descend into subdirectories of directory inputs.
    pub recursive: bool,
    /// Extensions (lower case, no dot) a file in a directory or glob must have.
    pub extensions: Vec<String>,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            recursive: false,
            extensions: DEFAULT_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }
    }
}

/// A media file found among the inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Path to open.
    pub path: PathBuf,
    /// Path relative to the input it was found under (a directory input or a glob's fixed
    /// prefix; just the file name for explicit files). Outputs under `-o` mirror it, and shards
    /// hash it, so the split does not depend on where the library is mounted.
    pub relative: PathBuf,
}

/// Expands `inputs` (directories, files, globs; `list` adds paths read from a file or `-` for
/// standard input, one per line) into media files, sorted and without duplicates.
///
/// Explicit files are taken whatever their extension (the user named them); files found in
/// directories or by globs must have one of `options.extensions`. A missing input is an error
/// naming it.
pub fn discover(
    inputs: &[PathBuf],
    list: Option<&Path>,
    options: &DiscoverOptions,
) -> Result<Vec<Source>> {
    let mut all_inputs: Vec<PathBuf> = inputs.to_vec();
    if let Some(list) = list {
        all_inputs.extend(read_list(list)?);
    }
    let mut found = Vec::new();
    for input in &all_inputs {
        if input.is_dir() {
            walk(input, input, options, &mut found)?;
        } else if input.is_file() {
            let name = input.file_name().map(PathBuf::from).unwrap_or_default();
            found.push(Source {
                path: input.clone(),
                relative: name,
            });
        } else if is_glob(input) {
            expand_glob(input, options, &mut found)?;
        } else {
            return Err(Error::input(input, "no such file or directory"));
        }
    }
    // The same file reached twice (a directory and a file inside it) is processed once.
    let mut seen = HashSet::new();
    found.retain(|s| seen.insert(std::fs::canonicalize(&s.path).unwrap_or(s.path.clone())));
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Reads a list of paths, one per line. Lines are bytes, as Unix file names are: a name that
/// is not UTF-8 is still a file to process. A line longer than any path can be stops the
/// read, so an endless stream without newlines cannot fill memory.
fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    use std::io::Read;
    const MAX_LINE: u64 = 4096;
    let mut reader: Box<dyn BufRead> = if list.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(list)
            .map_err(|e| Error::input(list, format!("cannot read the list: {e}")))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut paths = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::input(list, format!("cannot read the list: {e}")))?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if n as u64 > MAX_LINE {
            return Err(Error::input(
                list,
                format!("line {number} is longer than {MAX_LINE} bytes: not a list of paths"),
            ));
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line);
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        paths.push(path_from_bytes(&line, trimmed));
    }
    Ok(paths)
}

/// The path a list line names: its bytes as they are on Unix (leading and trailing spaces
/// dropped), the lossy text elsewhere.
fn path_from_bytes(line: &[u8], trimmed: &str) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let start = line
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        let end = line
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(start, |i| i + 1);
        let _ = trimmed;
        PathBuf::from(std::ffi::OsStr::from_bytes(&line[start..end]))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(trimmed)
    }
}

fn has_media_extension(path: &Path, options: &DiscoverOptions) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| options.extensions.contains(&e))
}

/// Hidden files and verbatim's own temporary files are never media to subtitle.
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn walk(root: &Path, dir: &Path, options: &DiscoverOptions, out: &mut Vec<Source>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::input(dir, format!("cannot list: {e}")))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if is_hidden(&path) {
            continue;
        }
        // symlink_metadata: directory symlinks are not followed, so a link loop cannot recurse
        // forever; file symlinks are taken.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if options.recursive {
                walk(root, &path, options, out)?;
            }
        } else if path.is_file() && has_media_extension(&path, options) {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push(Source { path, relative });
        }
    }
    Ok(())
}

fn is_glob(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '['])
}

fn expand_glob(pattern: &Path, options: &DiscoverOptions, out: &mut Vec<Source>) -> Result<()> {
    let text = pattern.to_string_lossy();
    let paths =
        glob::glob(&text).map_err(|e| Error::input(pattern, format!("bad glob pattern: {e}")))?;
    // The fixed leading part of the pattern is the root the relative paths start from.
    let root: PathBuf = pattern
        .components()
        .take_while(|c| !is_glob(Path::new(c.as_os_str())))
        .collect();
    let before = out.len();
    for path in paths.flatten() {
        if path.is_file() && !is_hidden(&path) && has_media_extension(&path, options) {
            let relative = path.strip_prefix(&root).unwrap_or(&path);
            let relative: PathBuf = relative
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            out.push(Source { path, relative });
        }
    }
    if out.len() == before {
        return Err(Error::input(pattern, "the pattern matches no media file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn finds_media_recursively_with_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("a.mp3"));
        touch(&d.join("notes.txt"));
        touch(&d.join(".hidden.wav"));
        touch(&d.join("s1/E1.MKV"));
        touch(&d.join("s1/deep/e2.flac"));
        let opts = DiscoverOptions {
            recursive: true,
            ..DiscoverOptions::default()
        };
        let found = discover(&[d.to_path_buf()], None, &opts).unwrap();
        let rel: Vec<_> = found.iter().map(|s| s.relative.clone()).collect();
        assert_eq!(
            rel,
            vec![
                PathBuf::from("a.mp3"),
                PathBuf::from("s1/E1.MKV"),
                PathBuf::from("s1/deep/e2.flac")
            ]
        );
        let flat = discover(&[d.to_path_buf()], None, &DiscoverOptions::default()).unwrap();
        assert_eq!(flat.len(), 1);
    }

    #[test]
    fn globs_lists_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("x/one.wav"));
        touch(&d.join("x/two.wav"));
        touch(&d.join("x/three.mp3"));
        let pattern = d.join("x/*.wav");
        let list = d.join("list.txt");
        std::fs::write(
            &list,
            format!("# media\n\n{}\n", d.join("x/three.mp3").display()),
        )
        .unwrap();
        let found = discover(
            &[pattern, d.join("x/one.wav")],
            Some(&list),
            &DiscoverOptions::default(),
        )
        .unwrap();
        let names: Vec<_> = found.iter().map(|s| s.relative.clone()).collect();
        assert_eq!(
            names,
            vec![
                PathBuf::from("one.wav"),
                PathBuf::from("three.mp3"),
                PathBuf::from("two.wav")
            ]
        );
    }

    #[test]
    fn missing_inputs_and_empty_globs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = discover(
            &[dir.path().join("nope")],
            None,
            &DiscoverOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
        let err = discover(
            &[dir.path().join("*.mp3")],
            None,
            &DiscoverOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("matches no media"), "{err}");
    }
}

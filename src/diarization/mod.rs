//! Who spoke when (`--diarize`): the diarization crate's models run over the recording, and
//! the speaker turns they find put onto the transcript word by word.

mod assign;
mod models;

use std::path::Path;
use std::sync::Arc;

pub use assign::{assign_speakers, RawTurn};
pub use diarize::DiarizeOptions;
pub use models::{
    ensure_models, locate_models, DiarizationModels, EMBEDDING_MODEL, SEGMENTATION_MODEL,
};

use crate::audio::AudioStream;
use crate::{Error, Result};

/// Loaded diarization models and the options a run uses; cheap to clone.
#[derive(Clone)]
pub struct Diarizer {
    models: Arc<diarize::Models>,
    pub options: DiarizeOptions,
}

impl std::fmt::Debug for Diarizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diarizer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Diarizer {
    /// Loads the segmentation and embedding models; a missing, truncated or foreign file is
    /// an error naming it.
    pub fn load(models: &DiarizationModels, options: DiarizeOptions) -> Result<Diarizer> {
        let loaded =
            diarize::Models::load(&models.segmentation, &models.embedding).map_err(model_error)?;
        Ok(Diarizer {
            models: Arc::new(loaded),
            options,
        })
    }

    /// The speaker turns of `path` (downmixed), decoded as a stream: memory holds one
    /// 10 s window of samples.
    pub fn turns_of_file(&self, path: &Path) -> Result<Vec<RawTurn>> {
        let mut stream = AudioStream::open_channel(path, None)?;
        let mut run = self.models.diarize(&self.options).map_err(input_error)?;
        while let Some(chunk) = stream.next_chunk()? {
            run.push(&chunk)
                .map_err(|e| Error::input(path, e.to_string()))?;
        }
        let turns = run
            .finish()
            .map_err(|e| Error::input(path, e.to_string()))?;
        Ok(turns
            .into_iter()
            .map(|t| RawTurn {
                start: t.start,
                end: t.end,
                speaker: t.speaker,
            })
            .collect())
    }
}

fn model_error(e: diarize::Error) -> Error {
    match e {
        diarize::Error::Io { path, source } => Error::Model {
            reason: format!("cannot read the diarization model: {source}"),
            path,
            source: None,
        },
        diarize::Error::Format { path, reason } => Error::Model {
            reason: format!("not a usable diarization model ({reason})"),
            path,
            source: None,
        },
        other => Error::Model {
            path: "diarization model".into(),
            reason: other.to_string(),
            source: None,
        },
    }
}

fn input_error(e: diarize::Error) -> Error {
    Error::Usage(e.to_string())
}

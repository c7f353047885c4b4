//! pyannote segmentation-3.0 (PyanNet): SincNet, BiLSTM, powerset classifier.

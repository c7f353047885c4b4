//! Kaldi-compatible log mel filterbank features (what CAM++ was trained on).

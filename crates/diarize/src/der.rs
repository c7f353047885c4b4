//! Diarization error rate (DER) with the standard definition.

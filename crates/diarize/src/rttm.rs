//! RTTM, the standard diarization format: reading and writing.

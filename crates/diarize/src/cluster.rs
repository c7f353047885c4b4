//! Clustering speaker embeddings into speakers.

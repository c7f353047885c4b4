//! CAM++ speaker embedding (3D-Speaker), forward pass.

//! Reading PyTorch checkpoints (zip + pickle) into named tensors, without torch.

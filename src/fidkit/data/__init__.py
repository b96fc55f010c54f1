"""Inputs: sources (folders, archives, arrays, tensors), decoding to uint8 RGB, resize kernels."""

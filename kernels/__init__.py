"""Numba kernels: packing token streams into rows, hashing, statistics."""

"""The numba kernels (one decorator, `degflow.kernels.sparse.sparse._jit`) and their math helpers."""

"""The DESeq2 engine shared by bulk and pseudobulk: public API, NumPy reference port, compiled inference."""

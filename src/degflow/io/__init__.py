"""Reading and writing: count formats, single-cell readers, sample sheets, tables.

- ``counts``: bulk count formats (matrix, featureCounts, STAR, salmon, kallisto, RSEM, tximport), annotations.
- ``singlecell``: single-cell readers (10x mtx / h5, h5ad, BD Rhapsody) and the single-cell sheet's checks.
- ``sheets``: the one sample-sheet reader (text cells, missing values, names) and the bulk sample sheet.
- ``tables``: tables and datasets written and read back (fixed float format, atomic writes).
- ``_textparse``: the numba reader of plain integer count matrices behind ``counts``.
"""

"""The numba count-matrix reader: same table as pandas, and it gives up (for pandas' messages) on anything else."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from degflow import DegflowInputError
from degflow.io import genecounts
from degflow.io._textparse import parse_int_matrix
from degflow.io.counts import read_counts


def test_airway_counts_equal_pandas(repo):
    ref = pd.read_csv(repo / "resources/airway/counts.tsv", sep="\t", index_col=0)
    assert ref.shape[0] > 10_000 and ref.shape[1] >= 8 and all(t.kind == "i" for t in ref.dtypes)
    text = ref.to_csv(sep="\t").encode()
    start = text.index(b"\n") + 1
    ids, values = parse_int_matrix(text, start, "\t", ref.shape[1])
    assert ids == [str(i) for i in ref.index]
    np.testing.assert_array_equal(values, ref.to_numpy())


@pytest.mark.parametrize("rows", [
    b"g1\t1\t2\ng2\t3\t-4\n",     # negative
    b"g1\t1\t2\ng2\t3\t4.0\n",    # decimal point
    b"g1\t1\t2\ng2\t3\tNA\n",     # NA
    b"g1\t1\t2\ng2\t3\n",         # short row
    b"g1\t1\t2\ng2\t3\t4\t5\n",   # long row
    b"g1\t1\t2\ng2\t3\t\n",       # empty last field
    b"g1\t1\t\t2\n",              # empty middle field
    b"g1\n",                      # no counts
    b"",                          # no rows
])
def test_gives_up_on_anything_but_plain_integers(rows):
    assert parse_int_matrix(rows, 0, "\t", 2) is None


def test_crlf_quotes_and_blank_lines():
    ids, values = parse_int_matrix(b'"g1",1,2\r\n\r\ng2,30,400\r\n', 0, ",", 2)
    assert ids == ["g1", "g2"]
    np.testing.assert_array_equal(values, [[1, 2], [30, 400]])


def test_large_matrix_read_through_numba_equals_small_path(tmp_path, monkeypatch):
    """The same file read with and without the numba reader (threshold lowered) gives the same table."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.poisson(50, (500, 6)), index=pd.Index([f"G{i}" for i in range(500)], name="gene_id"),
                         columns=[f"S{j}" for j in range(6)])
    path = tmp_path / "counts.tsv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("# a comment line\n")
        frame.to_csv(fh, sep="\t")
    slow = read_counts(path).counts
    monkeypatch.setattr(genecounts, "_NUMBA_READ_BYTES", 0)
    fast = read_counts(path).counts
    pd.testing.assert_frame_equal(fast, slow)
    pd.testing.assert_frame_equal(fast, frame)


def test_bad_counts_still_named_with_the_numba_reader(tmp_path, monkeypatch):
    """The numba reader gives up on a negative count; the message still names the gene and the sample."""
    path = tmp_path / "counts.tsv"
    path.write_text("gene_id\tA\tB\ng1\t1\t2\ng2\t3\t-4\n")
    monkeypatch.setattr(genecounts, "_NUMBA_READ_BYTES", 0)
    with pytest.raises(DegflowInputError, match=r"negative count -4 for gene 'g2', sample 'B'"):
        read_counts(path)

"""Single-cell stages (new home; see degflow.single_cell for the in-memory path)."""

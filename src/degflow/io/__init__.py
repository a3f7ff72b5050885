"""Reading and writing: count formats, single-cell readers, sample sheets, tables."""

"""Per-sample pathway scores, grouped by a design variable, PNG + PDF."""
from _common import setup

setup(snakemake)
from degflow.io.sheets import read_sample_sheet
from degflow.io.tables import read_tsv
from degflow.pl import compound as compound_plots
from degflow.pl.base import save

scores = read_tsv(snakemake.input.scores).set_index("sample")
sheet = read_sample_sheet(snakemake.input.samples)
fig = compound_plots.pathway_scores(scores, sheet, group_by=snakemake.params.group_by, title="Pathway scores")
save(fig, snakemake.output.png, snakemake.output.pdf)

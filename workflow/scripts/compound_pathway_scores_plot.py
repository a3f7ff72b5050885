"""Per-sample pathway scores, grouped by a design variable, PNG + PDF."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.pl import compound as compound_plots
from degflow.pl.base import save
from degflow.plan.config import read_sample_sheet

scores = read_tsv(snakemake.input.scores).set_index("sample")
sheet = read_sample_sheet(snakemake.input.samples)
fig = compound_plots.pathway_scores(scores, sheet, group_by=snakemake.params.group_by, title="Pathway scores")
save(fig, snakemake.output.png, snakemake.output.pdf)

"""Genes of interest: find them, gather their results in every test (Wald contrasts, LRT) into one table."""
from _common import setup, warn

setup(snakemake)
from degflow.bulk import genes_of_interest as goi
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv
from degflow.report import html_table

p = snakemake.params
data, _ = read_bulk_dataset(snakemake.input.dataset)
lookup = goi.match_genes(p.genes, data.var_names, data.var["gene_name"].astype(str))
write_tsv(lookup, snakemake.output.lookup)
missing = lookup.loc[lookup["matched_by"] == goi.NOT_FOUND, ["query"]]
write_tsv(missing, snakemake.output.not_found)
results = {name: read_tsv(path, dtype={"gene_name": str}) for name, path in zip(p.tests, snakemake.input.results, strict=False)}
table = goi.results_table(lookup, results)
write_tsv(table, snakemake.output.table)
n_found = lookup.loc[lookup["matched_by"] != goi.NOT_FOUND, "query"].nunique()
if n_found == 0:
    warn(f"genes_of_interest: NONE of the {len(p.genes)} genes was found among the {data.n_vars:,} analysed genes "
         f"(IDs {', '.join(data.var_names[:2])}, ...): check they are gene IDs or names of these counts (names need "
         f"bulk.annotation); see {snakemake.output.lookup}")
elif len(missing):
    warn(f"genes_of_interest: {len(missing)} of {len(p.genes)} not found among the analysed genes: "
         f"{', '.join(missing['query'][:20])}{' ...' if len(missing) > 20 else ''} (listed in "
         f"{snakemake.output.not_found})")
caption = (f"{n_found} of {len(p.genes)} genes of interest found; every test's log2 fold change, p-value and "
           "adjusted p-value side by side." + (f" Not found: {', '.join(missing['query'])}." if len(missing) else ""))
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(table, title="Genes of interest", caption=caption))

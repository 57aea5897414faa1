"""The sample browser of `report.html`: plain HTML, CSS and JavaScript, nothing fetched, no kernel needed.

Every sample is a row (a small thumbnail, its id, caption and per-sample scores). Rows sort by any column
(click its header), a filter keeps rows matching clauses such as `psnr_hole < 12 and lpips > 0.3` or
`id ~ dog`, and a click or the arrow keys open a panel with the task's views at full size, the |result −
reference| heat map and every score of the model and the baseline. Thumbnails and heat maps are small WebP images
inside the page; full-size images are relative links into the run folder, so the page works from the
folder, a copy or an unpacked zip of it, and a 1,000-sample page stays a few MB
(`benchmarks/report_size.py`). The ipywidgets browser (`ldm_lab.widgets`) stays for live notebooks.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image

from ldm_lab.plots import (
    LOWER_IS_BETTER,
    ROLE_ORDER,
    default_metric,
    has_role,
    image_path,
    is_number,
    load_image,
    role_label,
    sample_metrics,
)
from ldm_lab.widgets import NO_PIXEL_MATCH, diff_heatmap

THUMB = 64   # row thumbnails (shown 40 px high): longest side in pixels
HEAT = 128   # heat maps inside the page: longest side in pixels (the views themselves are linked files)
WEBP_QUALITY = 60  # a 64 px thumbnail of a demo photo: 1.1 KiB (JPEG at quality 75: 1.8 KiB)


def webp_data_uri(image: np.ndarray, longest: int) -> str:
    """uint8 HxWx3 -> `data:image/webp;base64,...`, downscaled (area-averaged) so its longest side <= `longest`."""
    img = Image.fromarray(image)
    img.thumbnail((longest, longest), Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, format="WEBP", quality=WEBP_QUALITY, method=6)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _number(value):
    return float(value) if is_number(value) else None


def browser_data(result) -> dict:
    """What the page's script reads: columns, roles with labels, and one entry per sample."""
    run_dir = result.output_dir
    roles = [r for r in ROLE_ORDER.get(result.task, ("input", "result", "reference")) if has_role(result, r)]
    heat = result.task not in NO_PIXEL_MATCH and {"result", "reference"} <= set(roles)
    baseline = {s.id: s for s in result.baseline_samples}
    rows = []
    for sample in result.samples:
        files = {}
        for role in roles:
            path = image_path(result, sample, role)
            if path is not None and path.is_file():
                files[role] = path.relative_to(run_dir).as_posix()
        shown = load_image(result, sample, "result") if "result" in files else None
        row = {"index": sample.index, "id": sample.id, "seed": sample.seed, "caption": sample.caption or "",
               "metrics": {k: _number(v) for k, v in sample.metrics.items()},
               "baseline": {k: _number(v) for k, v in (baseline[sample.id].metrics if sample.id in baseline else {}).items()},
               "files": files, "thumb": webp_data_uri(shown, THUMB) if shown is not None else None,
               "heat": None, "heat_max": None}
        if heat and shown is not None and "reference" in files:
            reference = load_image(result, sample, "reference")
            if reference is not None and reference.shape == shown.shape:
                image, peak = diff_heatmap(shown, reference)
                row["heat"], row["heat_max"] = webp_data_uri(image, HEAT), round(peak, 1)
        rows.append(row)
    return {"task": result.task, "columns": sample_metrics(result), "lower_is_better": sorted(LOWER_IS_BETTER),
            "default_sort": default_metric(result) or "", "roles": [[r, role_label(result.task, r)] for r in roles],
            "heat_title": (f"|{role_label(result.task, 'result')} − {role_label(result.task, 'reference')}|"
                           if heat else ""), "samples": rows}


def browser_html(result) -> str:
    """A self-contained `<section>` (style, data, script) to place in report.html."""
    # "<" only occurs inside JSON strings: as \u003c it can never close the script element or open a comment
    data = json.dumps(browser_data(result), ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")
    return (f'<section id="ldm-browser" class="ldm-browser">'
            f"<style>{_CSS}</style>{_CONTROLS}"
            f'<script type="application/json" id="ldm-browser-data">{data}</script>'
            f"<script>{_SCRIPT}</script></section>")


_CSS = """
.ldm-browser{font:13px/1.35 system-ui,sans-serif;margin:1.5em 0}
.ldm-browser .bar{display:flex;gap:.8em;align-items:center;margin:.4em 0}
.ldm-browser input.filter{width:28em;font:inherit;padding:.2em .4em}
.ldm-browser .err{color:#a33}
.ldm-browser .wrap{display:flex;gap:1em;align-items:flex-start}
.ldm-browser .list{max-height:70vh;overflow:auto;border:1px solid #ccc;flex:0 0 auto}
.ldm-browser table{border-collapse:collapse}
.ldm-browser th{position:sticky;top:0;background:#f4f4f4;cursor:pointer;white-space:nowrap;padding:.2em .5em}
.ldm-browser th.sorted{background:#dde8f6}
.ldm-browser td{padding:.1em .5em;white-space:nowrap;text-align:right}
.ldm-browser td.id,.ldm-browser td.caption{text-align:left;max-width:16em;overflow:hidden;text-overflow:ellipsis}
.ldm-browser tr.row{cursor:pointer}
.ldm-browser tr.row:hover{background:#f3f7fc}
.ldm-browser tr.selected{background:#cfe0f7}
.ldm-browser td img{height:40px;display:block}
.ldm-browser .panel{flex:1 1 auto;min-width:20em}
.ldm-browser .views{display:flex;flex-wrap:wrap;gap:.6em}
.ldm-browser figure{margin:0}
.ldm-browser figure img{width:256px;height:auto;border:1px solid #ddd}
.ldm-browser figcaption{font-weight:600}
.ldm-browser .scores td{text-align:left}
"""

_CONTROLS = """
<div class="bar"><label>filter <input class="filter" type="text" spellcheck="false"
 placeholder="e.g. psnr_hole &lt; 12 and lpips &gt; 0.3, id ~ dog"></label>
<span class="count"></span><span class="err"></span></div>
<div class="wrap"><div class="list" tabindex="0"><table><thead></thead><tbody></tbody></table></div>
<div class="panel"><i>click a row (or use the arrow keys) to see its images</i></div></div>
"""

_SCRIPT = r"""
(function () {
  const root = document.getElementById("ldm-browser");
  const data = JSON.parse(root.querySelector("#ldm-browser-data").textContent);
  const cols = ["id", ...(data.task === "text2img" ? ["caption"] : []), ...data.columns];
  const lower = new Set(data.lower_is_better);
  const thead = root.querySelector("thead"), tbody = root.querySelector("tbody");
  const panel = root.querySelector(".panel"), count = root.querySelector(".count");
  const err = root.querySelector(".err"), filterBox = root.querySelector("input.filter");
  let sortCol = data.default_sort || "", ascending = !lower.has(sortCol);  // worst first: low PSNR, high LPIPS
  let visible = [], selected = null, test = () => true;
  const esc = s => String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  const value = (s, c) => c === "id" ? s.id : c === "caption" ? s.caption : s.metrics[c];
  const fmt = v => v === null || v === undefined ? "n/a" : typeof v === "number" ? Number(v.toPrecision(4)).toString() : v;

  function compile(text) {
    const clauses = text.split(/\s*(?:\band\b|&&|,)\s*/i).filter(c => c.trim());
    const tests = clauses.map(clause => {
      const m = clause.trim().match(/^([A-Za-z_][\w]*)\s*(<=|>=|==|!=|<|>|=|~)\s*(.+)$/);
      if (!m) throw new Error(`cannot read "${clause}": write column op value, e.g. psnr_hole < 12`);
      const [, col, op, raw] = m;
      if (!cols.includes(col)) throw new Error(`unknown column "${col}"; columns: ${cols.join(", ")}`);
      if (op === "~") { const needle = raw.trim().toLowerCase(); return s => String(value(s, col)).toLowerCase().includes(needle); }
      const ref = Number(raw);
      if (col === "id" || col === "caption" || Number.isNaN(ref)) {
        const str = raw.trim().replace(/^["']|["']$/g, "");
        if (op === "=" || op === "==") return s => String(value(s, col)) === str;
        if (op === "!=") return s => String(value(s, col)) !== str;
        throw new Error(`"${raw}" is not a number`);
      }
      const cmp = {"<": (a, b) => a < b, "<=": (a, b) => a <= b, ">": (a, b) => a > b, ">=": (a, b) => a >= b,
                   "=": (a, b) => a === b, "==": (a, b) => a === b, "!=": (a, b) => a !== b}[op];
      return s => { const v = value(s, col); return typeof v === "number" && cmp(v, ref); };
    });
    return s => tests.every(t => t(s));
  }

  function header() {
    thead.innerHTML = "<tr><th>#</th><th></th>" + cols.map(c =>
      `<th data-col="${esc(c)}" class="${c === sortCol ? "sorted" : ""}" title="sort by ${esc(c)}${lower.has(c) ? " (lower is better)" : ""}">` +
      `${esc(c)}${lower.has(c) ? " ↓" : ""}${c === sortCol ? (ascending ? " ▲" : " ▼") : ""}</th>`).join("") + "</tr>";
  }

  function render() {
    const rows = data.samples.filter(test);
    if (sortCol) {
      rows.sort((a, b) => {
        const x = value(a, sortCol), y = value(b, sortCol);
        const missing = (x === null || x === undefined) - (y === null || y === undefined);
        if (missing) return missing;                       // samples without a value go last
        if (x === y) return a.index - b.index;
        return (x < y ? -1 : 1) * (ascending ? 1 : -1);
      });
    }
    visible = rows;
    header();
    tbody.innerHTML = rows.map(s =>
      `<tr class="row${s === selected ? " selected" : ""}" data-index="${s.index}"><td>${s.index + 1}</td>` +
      `<td>${s.thumb ? `<img alt="" src="${s.thumb}">` : ""}</td>` +
      cols.map(c => `<td class="${c === "id" || c === "caption" ? c : "num"}" data-col="${esc(c)}">${esc(fmt(value(s, c)))}</td>`).join("") +
      "</tr>").join("");
    count.textContent = `${rows.length} of ${data.samples.length} samples`;
  }

  function open(sample) {
    selected = sample;
    for (const tr of tbody.querySelectorAll("tr.row")) tr.classList.toggle("selected", Number(tr.dataset.index) === sample.index);
    const row = tbody.querySelector(`tr[data-index="${sample.index}"]`);
    if (row) row.scrollIntoView({block: "nearest"});
    const views = data.roles.filter(([role]) => sample.files[role]).map(([role, label]) =>
      `<figure data-role="${esc(role)}"><figcaption>${esc(label)}</figcaption>` +
      `<a href="${esc(sample.files[role])}"><img alt="${esc(label)}" src="${esc(sample.files[role])}"></a>` +
      `<div>${esc(sample.files[role])}</div></figure>`);
    if (sample.heat) views.push(`<figure data-role="heat"><figcaption>${esc(data.heat_title)}</figcaption>` +
      `<img alt="heat map" src="${sample.heat}"><div>black 0, brightest ${sample.heat_max}/255 (mean over RGB)</div></figure>`);
    const names = [...new Set([...Object.keys(sample.metrics), ...Object.keys(sample.baseline)])];
    const hasBase = Object.keys(sample.baseline).length > 0;
    const scores = names.map(n => `<tr><td>${esc(n)}${lower.has(n) ? " ↓" : ""}</td><td>${esc(fmt(sample.metrics[n]))}</td>` +
      (hasBase ? `<td>${esc(fmt(sample.baseline[n]))}</td>` : "") + "</tr>").join("");
    panel.innerHTML = `<div class="title"><b>${esc(sample.id)}</b> — image ${sample.index + 1}, seed ${sample.seed}</div>` +
      (sample.caption ? `<div class="caption"><i>${esc(sample.caption)}</i></div>` : "") +
      `<div class="views">${views.join("")}</div>` +
      (names.length ? `<table class="scores"><tr><th>metric</th><th>model</th>${hasBase ? "<th>baseline</th>" : ""}</tr>${scores}</table>` : "");
  }

  thead.addEventListener("click", e => {
    const th = e.target.closest("th[data-col]");
    if (!th) return;
    const col = th.dataset.col;
    if (col === sortCol) ascending = !ascending; else { sortCol = col; ascending = true; }
    render();
  });
  tbody.addEventListener("click", e => {
    const tr = e.target.closest("tr.row");
    if (tr) open(data.samples.find(s => s.index === Number(tr.dataset.index)));
  });
  root.addEventListener("keydown", e => {
    if (e.target === filterBox || !visible.length || !["ArrowDown", "ArrowUp"].includes(e.key)) return;
    e.preventDefault();
    const at = visible.indexOf(selected);
    const next = at < 0 ? 0 : Math.min(Math.max(at + (e.key === "ArrowDown" ? 1 : -1), 0), visible.length - 1);
    open(visible[next]);
  });
  filterBox.addEventListener("input", () => {
    try { test = compile(filterBox.value); err.textContent = ""; }
    catch (ex) { err.textContent = ex.message; return; }
    render();
  });
  render();
})();
"""

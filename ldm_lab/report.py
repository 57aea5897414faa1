"""Reports: metric tables with 95% CIs and quality ratings, run summaries, run comparisons, HTML export.

Tables render only what the runners wrote (`metrics.json` through `RunResult`): a metric that could
not be computed (e.g. FID without the Inception weights offline) is shown as unavailable with the
runner's reason, never as a number. Ratings are the older scripts' words (`ldm_lab.metrics.rate`).
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

from ldm_lab.metrics.ratings import RATING_TABLES, rate

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# run.json sections shown by `run_summary` (scalar entries only).
SUMMARY_SECTIONS = ("parameters", "sampling", "model", "dataset", "device", "environment", "timings")
SUMMARY_SKIP = frozenset({"progress", "metric_weights"})
# Settings that never explain a difference between runs (paths, bookkeeping).
LABEL_SKIP = frozenset({"output_dir", "data_dir", "dataset_path", "dataset_root", "config", "model", "checkpoint",
                        "config_path", "model_path", "tokenizer", "status", "overwrite", "progress", "batch_size",
                        "conditioning", "composite", "baseline", "task"})


def _num(value):
    """metrics.json numbers; non-finite values are stored as the strings "inf", "-inf", "nan"."""
    return float(value) if isinstance(value, str) and value in ("inf", "-inf", "nan") else value


def format_metric(entry: dict | None) -> str:
    """`0.1234 [0.1, 0.15]` (value and 95% CI), `unavailable`, or `` when the metric is absent."""
    if not entry:
        return ""
    if entry.get("value") is None:
        return "unavailable"
    ci = entry.get("ci95")
    text = f"{_num(entry['value']):.4g}"
    return text + (f" [{_num(ci[0]):.4g}, {_num(ci[1]):.4g}]" if ci else "")


def _metric_entries(block: dict | None) -> dict[str, dict]:
    """metrics.json `model`/`baseline` block -> {name: MetricResult dict}, skipping non-metric keys."""
    return {k: v for k, v in (block or {}).items()
            if isinstance(v, dict) and ("value" in v or "unavailable" in v)}


def _note(entry: dict | None) -> str:
    if not entry:
        return ""
    parts = [entry["unavailable"]] if entry.get("value") is None and entry.get("unavailable") else []
    return "; ".join(parts + list(entry.get("warnings", [])))


def _td(cell: str) -> str:
    style = "text-align:left;" + ("color:#a33;" if cell == "unavailable" else "") + (
        "white-space:nowrap;" if len(cell) < 40 else "min-width:20em;max-width:50em;")
    return f"<td style='{style}'>{html.escape(cell)}</td>"


def _html_table(header: list[str], rows: list[list[str]], title: str) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    return f"<h4>{html.escape(title)}</h4><table class='ldm-table'><tr>{head}</tr>{body}</table>"


def _text_table(header: list[str], rows: list[list[str]], title: str) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [title] + ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                       for r in [header, *rows]]
    return "\n".join(lines)


@dataclass(repr=False)
class Table:
    """A rendered table: `rows` (dicts) for code, HTML in notebooks, aligned text in terminals."""

    title: str
    header: list[str]
    rows: list[dict] = field(default_factory=list)
    folded: bool = False  # HTML: inside a closed <details> (long reference tables such as run.json)

    def cells(self) -> list[list[str]]:
        return [[str(row.get(h, "")) for h in self.header] for row in self.rows]

    def _repr_html_(self) -> str:
        table = _html_table(self.header, self.cells(), self.title)
        if not self.folded:
            return table
        return f"<details><summary>{html.escape(self.title)} ({len(self.rows)} rows)</summary>{table}</details>"

    def __str__(self) -> str:
        return _text_table(self.header, self.cells(), self.title)

    __repr__ = __str__

    def to_csv(self, path: str | Path) -> Path:
        from ldm_lab.data.files import write_bytes_atomic

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_bytes_atomic(Path(path), buf.getvalue().encode())
        return Path(path)


def metric_table(result) -> Table:
    """Model metrics with 95% CI, N and rating, beside the baseline computed in the same run."""
    model, baseline = _metric_entries(result.metrics.get("model")), _metric_entries(result.metrics.get("baseline"))
    header = ["metric", "model [95% CI]", "N", "rating", "baseline [95% CI]", "protocol", "note"]
    rows, seen = [], {}
    for name in [*model, *(n for n in baseline if n not in model)]:
        m, b = model.get(name), baseline.get(name)
        rating = rate(name, _num(m["value"])) if m and m.get("value") is not None and name in RATING_TABLES else ""
        reason = _note(m) or _note(b)
        note = f"as for {seen[reason]}" if reason in seen else reason  # a reason is spelled out once
        if reason:
            seen.setdefault(reason, name)
        rows.append({"metric": name, "model [95% CI]": format_metric(m), "N": (m or b).get("n") or "",
                     "rating": rating, "baseline [95% CI]": format_metric(b),
                     "protocol": (m or b).get("protocol", ""), "note": note})
    if not baseline:
        header.remove("baseline [95% CI]")
    method = result.metrics.get("method") or result.task
    return Table(f"{method} ({len(result.samples)} samples, {result.output_dir})", header, rows)


def _flat_run(run: dict) -> dict:
    """run.json parameters and sampling settings (with the top-level scalars) in one flat dict."""
    flat = {k: v for k, v in run.items() if not isinstance(v, (dict, list))}
    for key in ("sampling", "parameters"):
        flat.update({k: v for k, v in (run.get(key) or {}).items() if not isinstance(v, (dict, list))})
    return flat


def run_value(result, name: str):
    """A parameter or setting recorded in run.json (e.g. `scale`, `steps`), or None."""
    return _flat_run(result.run).get(name)


def run_summary(result) -> Table:
    """What run.json records: parameters, model and dataset hashes, sampling, device, timings."""
    rows = [{"field": k, "value": v} for k, v in result.run.items() if not isinstance(v, (dict, list))]
    for section in SUMMARY_SECTIONS:
        block = result.run.get(section)
        if isinstance(block, dict):
            rows += [{"field": f"{section}.{k}", "value": v} for k, v in block.items()
                     if not isinstance(v, (dict, list)) and k not in SUMMARY_SKIP]
    rows += [{"field": "dataset.skipped", "value": f"{name}: {why}"}  # inputs left out by skip_invalid
             for name, why in (result.run.get("dataset") or {}).get("skipped") or []]
    return Table(f"run.json of {result.output_dir}", ["field", "value"], rows, folded=True)


def load_runs(run_dirs: list[str | Path]) -> list:
    """RunResult of each run folder (relative paths are relative to the repository)."""
    from ldm_lab.results import load_run

    if not run_dirs:
        raise ValueError("`run_dirs` is empty; give at least one run folder")
    return [load_run(d if Path(d).is_absolute() else PROJECT_ROOT / d) for d in run_dirs]


def run_label(result, others: list | None = None) -> str:
    """Folder name, plus the run.json settings that differ between the compared runs (at most 3)."""
    label = Path(result.output_dir).name
    if not others or len(others) < 2:
        return label
    flats = [_flat_run(r.run) for r in others]
    keys = [k for k in dict.fromkeys(k for f in flats for k in f)
            if k not in LABEL_SKIP and len({repr(f.get(k)) for f in flats}) > 1][:3]
    mine = _flat_run(result.run)
    return label + ("" if not keys else " (" + ", ".join(f"{k}={mine.get(k)}" for k in keys) + ")")


def output_folder(output_dir: str | Path = "", run_id: str = "") -> Path | None:
    """Where a comparison writes its CSV files (created): reports/<run_id>, else `output_dir` (relative: to the
    repository, whatever the kernel's working directory), else None."""
    folder = PROJECT_ROOT / "reports" / run_id if run_id else (Path(output_dir) if output_dir else None)
    if folder is None:
        return None
    folder = folder if folder.is_absolute() else PROJECT_ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def compare_table(results: list, *, output_dir: str = "", run_id: str = "") -> Table:
    """Metrics of several runs side by side (value [95% CI]); written to compare.csv when a folder is given."""
    labels = [run_label(r, results) for r in results]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}: {label}" for i, label in enumerate(labels)]
    keys = [(part, n) for part in ("model", "baseline") for r in results
            for n in _metric_entries(r.metrics.get(part))]
    rows = []
    for part, name in dict.fromkeys(keys):
        row = {"metric": name if part == "model" else f"{name} ({part})"}
        for label, r in zip(labels, results, strict=True):
            row[label] = format_metric(_metric_entries(r.metrics.get(part)).get(name))
        rows.append(row)
    table = Table(f"{len(results)} runs compared", ["metric", *labels], rows)
    folder = output_folder(output_dir, run_id)
    if folder is not None:
        table.to_csv(folder / "compare.csv")
    return table


TEMPLATES = Path(__file__).resolve().parent / "templates"
LIVE_ONLY = "live-only"  # cell tag: the cell needs a kernel (ipywidgets); left out of report.html
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


PHOTO_PNG_BYTES = 256 * 1024  # a plot PNG larger than this is mostly photos (sample grids)


def _photo_png_as_jpeg(data: dict) -> None:
    """In report.html only: re-encode a large PNG output (a grid of sample images) as JPEG (quality 88) when
    that at least halves it; the executed notebook keeps the PNG. Line plots stay PNG (they are small)."""
    import base64

    from PIL import Image

    png = data.get("image/png")
    if not isinstance(png, str) or len(png) * 3 // 4 < PHOTO_PNG_BYTES:
        return
    with Image.open(io.BytesIO(base64.b64decode(png))) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=88, optimize=True)
    if buf.tell() * 2 <= len(png) * 3 // 4:
        del data["image/png"]
        data["image/jpeg"] = base64.b64encode(buf.getvalue()).decode("ascii")


def export_html(notebook: str | Path, html_path: str | Path | None = None, *, run_dir: str | Path | None = None) -> Path:
    """Executed notebook -> report.html that opens offline: outputs only (code folded away), images embedded,
    nothing fetched from a CDN (`templates/ldm_report`), cells tagged `live-only` left out and, for a task
    run folder `run_dir`, the plain HTML/JS sample browser (`ldm_lab.report_browser`) at the end."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    from ldm_lab.data.files import write_bytes_atomic

    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"no executed notebook at {notebook}; run the task command first")
    html_path = Path(html_path) if html_path else notebook.with_suffix(".html")
    config = Config()
    config.TagRemovePreprocessor.remove_cell_tags = {LIVE_ONLY}
    config.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(config=config, template_name="ldm_report", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata.pop("widgets", None)  # live widget state (the ipywidgets browser's PNGs): kernel-only
    for cell in nb.cells:  # widget views (progress bars) have nothing to show without a kernel
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if WIDGET_VIEW not in o.get("data", {})]
            for output in cell.outputs:
                _photo_png_as_jpeg(output.get("data", {}))
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    if run_dir is not None and (Path(run_dir) / "metrics.json").is_file():
        from ldm_lab.report_browser import browser_html
        from ldm_lab.results import load_run

        body = body.replace("</main>", browser_html(load_run(run_dir)) + "\n</main>", 1)
    write_bytes_atomic(html_path, body.encode("utf-8"))
    return html_path

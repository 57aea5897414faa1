"""Run results on disk (design §4, §9): output names, atomic plain JSON, per_sample.csv, `RunResult`.

A run folder holds `run.json` (parameters, hashes, seeds, samples, versions, timings), `metrics.json`
(`{"task", "method", "model": {name: MetricResult dict}, "baseline": {...}}`, no timings),
`per_sample.csv` / `per_sample_baseline.csv` (`id`, `file`, one column per metric), the seed-compatible
images and summaries, and the report written by the notebook layer. JSON holds only plain Python values;
non-finite floats are written as the strings "inf", "-inf", "nan" (strict JSON has no such numbers).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ldm_lab.data.files import write_bytes_atomic
from ldm_lab.metrics.ratings import RATING_TABLES, rate

RUN_JSON, METRICS_JSON = "run.json", "metrics.json"
PER_SAMPLE_CSV, PER_SAMPLE_BASELINE_CSV = "per_sample.csv", "per_sample_baseline.csv"
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# ---- seed-compatible output names (design §9) ----------------------------------------------------------
def inpainted_name(index: int) -> str:
    """`inpainted_NNNNN.png`, 1-based position in evaluation order."""
    return f"inpainted_{index + 1:05d}.png"


def generated_name(index: int) -> str:
    """`generated_NNNNN.png`, 1-based position in evaluation order."""
    return f"generated_{index + 1:05d}.png"


def sr_sample_names(index: int) -> tuple[str, str]:
    """`sample_results/result_NNN_sr.png` and `..._hr.png`, 0-based (written for the first 10 pairs)."""
    return f"sample_results/result_{index:03d}_sr.png", f"sample_results/result_{index:03d}_hr.png"


def superres_summary_name(scale: int) -> str:
    return f"urban100_x{scale}_results.json"


# ---- plain JSON and CSV --------------------------------------------------------------------------------
def plain(obj):
    """JSON-safe copy: numpy scalars -> Python numbers, paths -> str, tuples -> lists, non-finite -> str."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} {obj!r} to JSON")


def write_json(path: str | Path, obj) -> None:
    """Indented UTF-8 JSON of `plain(obj)`, written atomically (temp file + rename)."""
    text = json.dumps(plain(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_bytes_atomic(Path(path), text.encode("utf-8"))


def read_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"not found: {path}") from None
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def write_per_sample_csv(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """`id`, `file`, then `columns`; rows hold already formatted cells (empty = undefined)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["id", "file", *columns], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row.get(k, "") for k in ["id", "file", *columns]} for row in rows)
    write_bytes_atomic(Path(path), buffer.getvalue().encode("utf-8"))


def _cell(value: str) -> float | None:
    if value == "":
        return None
    return _NON_FINITE[value] if value in _NON_FINITE else float(value)


def read_per_sample_csv(path: str | Path) -> list[dict]:
    """Rows of a per-sample CSV with metric cells parsed to float (None when empty)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: (v if k in ("id", "file") else _cell(v)) for k, v in row.items()}
                for row in csv.DictReader(handle)]


# ---- result objects ------------------------------------------------------------------------------------
@dataclass
class SampleRecord:
    """One evaluated sample: position, dataset id, seed, files (role -> path relative to the run folder)."""

    index: int
    id: str
    seed: int
    files: dict[str, str]
    caption: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The manifest entry (metrics live in the CSV files)."""
        return {"index": self.index, "id": self.id, "seed": self.seed, "files": dict(self.files),
                "caption": self.caption}


@dataclass
class RunResult:
    """Everything a run produced; built by the runners and by `load_run` (notebooks render it)."""

    output_dir: Path
    task: str
    run: dict
    metrics: dict
    samples: list[SampleRecord]
    baseline_samples: list[SampleRecord] = field(default_factory=list)

    def metric_table(self) -> list[dict]:
        """One row per metric of the model and of the baseline: value, 95% CI, N, protocol, rating, status."""
        rows = []
        for system in ("model", "baseline"):
            for name, m in (self.metrics.get(system) or {}).items():
                value = _number(m.get("value"))
                ci = m.get("ci95") or [None, None]
                rows.append({
                    "system": system, "metric": name, "value": value,
                    "ci95_low": _number(ci[0]), "ci95_high": _number(ci[1]), "n": m.get("n"),
                    "protocol": m.get("protocol", ""),
                    "rating": rate(name, value) if name in RATING_TABLES and value is not None else "",
                    "status": "ok" if "unavailable" not in m else "unavailable",
                    "reason": m.get("unavailable", ""), "warnings": "; ".join(m.get("warnings", [])),
                })
        return rows

    def _repr_html_(self) -> str:
        head = ("<tr><th>system</th><th>metric</th><th>value</th><th>95% CI</th><th>N</th><th>rating</th>"
                "<th>protocol / note</th></tr>")
        body = []
        for r in self.metric_table():
            if r["status"] == "ok":
                value = f"{r['value']:.4g}"
                ci = f"[{r['ci95_low']:.4g}, {r['ci95_high']:.4g}]" if r["ci95_low"] is not None else ""
                note = r["protocol"] + (f" — {r['warnings']}" if r["warnings"] else "")
            else:
                value, ci, note = "unavailable", "", r["reason"]
            cells = [r["system"], r["metric"], value, ci, "" if r["n"] is None else str(r["n"]), r["rating"], note]
            body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        title = f"<p><b>{html.escape(self.task)}</b> — {html.escape(str(self.output_dir))} " \
                f"({len(self.samples)} samples)</p>"
        return f"{title}<table>{head}{''.join(body)}</table>"


def _number(value):
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    return value


def _records(entries: list[dict], rows: list[dict] | None) -> list[SampleRecord]:
    records = []
    for i, entry in enumerate(entries):
        metrics = {}
        if rows is not None and i < len(rows):
            if rows[i]["id"] != entry["id"]:
                raise ValueError(f"per-sample CSV row {i + 1} has id {rows[i]['id']!r}, run.json says {entry['id']!r}")
            metrics = {k: v for k, v in rows[i].items() if k not in ("id", "file")}
        records.append(SampleRecord(entry["index"], entry["id"], entry["seed"], dict(entry["files"]),
                                    entry.get("caption"), metrics))
    return records


def load_run(output_dir: str | Path) -> RunResult:
    """Rebuild a `RunResult` from a finished run folder (run.json, metrics.json, per-sample CSVs)."""
    folder = Path(output_dir)
    if not (folder / RUN_JSON).is_file():
        raise FileNotFoundError(f"no run in {folder}: {RUN_JSON} not found")
    run = read_json(folder / RUN_JSON)
    if not (folder / METRICS_JSON).is_file():
        raise FileNotFoundError(
            f"run in {folder} is not finished ({METRICS_JSON} missing, status {run.get('status')!r}); "
            "rerun the same command to resume it"
        )
    metrics = read_json(folder / METRICS_JSON)
    rows = read_per_sample_csv(folder / PER_SAMPLE_CSV) if (folder / PER_SAMPLE_CSV).is_file() else None
    base_csv = folder / PER_SAMPLE_BASELINE_CSV
    base_rows = read_per_sample_csv(base_csv) if base_csv.is_file() else None
    return RunResult(folder, run["task"], run, metrics, _records(run.get("samples", []), rows),
                     _records(run.get("baseline_samples", []), base_rows))

"""Streaming accumulator for per-sample metrics: rows for per_sample.csv, then means with bootstrap CIs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ldm_lab.metrics.bootstrap import N_RESAMPLES, SEED, summarize_per_sample
from ldm_lab.metrics.result import PER_SAMPLE_COLUMNS, MetricResult


class PerSampleAccumulator:
    """Collects one row per sample (id, file, metric values); undefined values stay None with a reason."""

    def __init__(self, columns: Sequence[str]):
        unknown = [c for c in columns if c not in PER_SAMPLE_COLUMNS]
        if unknown:
            raise ValueError(f"unknown per-sample columns {unknown}; choose from {list(PER_SAMPLE_COLUMNS)}")
        self.columns = tuple(columns)
        self.rows: list[dict] = []
        self.reasons: dict[str, dict[str, str]] = {}  # sample id -> {column: why undefined}

    def add(self, sample_id: str, file: str, values: dict, reasons: dict[str, str] | None = None) -> None:
        """Add one sample; every column must be given (None when undefined, with its reason)."""
        missing = [c for c in self.columns if c not in values]
        if missing:
            raise ValueError(f"sample {sample_id!r} lacks columns {missing}")
        row = {"id": sample_id, "file": file}
        for column in self.columns:
            value = values[column]
            row[column] = None if value is None else float(value)
        undefined = {c: (reasons or {}).get(c, "undefined") for c in self.columns if row[c] is None}
        if undefined:
            self.reasons[sample_id] = undefined
        self.rows.append(row)

    def summary(
        self, protocols: dict[str, str] | None = None, *, n_resamples: int = N_RESAMPLES, seed: int = SEED
    ) -> dict[str, MetricResult]:
        """Mean and bootstrap 95% CI per column over the samples where it is defined."""
        protocols = protocols or {}
        return {
            c: summarize_per_sample(
                c,
                [r[c] for r in self.rows],
                protocol=protocols.get(c, ""),
                n_resamples=n_resamples,
                seed=seed,
            )
            for c in self.columns
        }

    def csv_rows(self) -> list[dict]:
        """Rows for per_sample.csv: undefined values as empty cells, +inf written as 'inf'."""
        fmt = lambda v: "" if v is None else ("inf" if v == math.inf else repr(v))
        return [{k: (fmt(v) if k in self.columns else v) for k, v in row.items()} for row in self.rows]

"""ipywidgets sample browser: every sample of a run, sortable by any per-sample metric.

One row of panels per sample: original / masked (inpainting) or LR (super-resolution), the model's
result, the reference, the baseline of the same run, and an |result - reference| heat map; below them
the sample id, seed, caption and its scores (model and baseline). It renders only what the runner
returned (`RunResult.samples` and the files they name).
"""

from __future__ import annotations

import html
import io

import ipywidgets as w
import numpy as np
from PIL import Image

from ldm_lab.plots import (
    LOWER_IS_BETTER,
    ROLE_ORDER,
    default_metric,
    has_role,
    is_number,
    load_image,
    rank_samples,
    role_label,
    sample_metrics,
)

DIFF_CMAP = "inferno"
NO_PIXEL_MATCH = frozenset({"text2img"})  # generated vs real image: no per-pixel correspondence


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 HxWx3 array -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def diff_heatmap(result_img: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean-over-channels |result - reference| coloured with `DIFF_CMAP` (0 .. max), and that max."""
    import matplotlib

    diff = np.abs(result_img.astype(np.float32) - reference.astype(np.float32)).mean(axis=2)
    peak = float(diff.max())
    rgba = matplotlib.colormaps[DIFF_CMAP](diff / max(peak, 1e-6))
    return (rgba[..., :3] * 255).round().astype(np.uint8), peak


class SampleBrowser(w.VBox):
    """A VBox (a real Jupyter widget): sort controls, a slider over samples, image panels and scores."""

    def __init__(self, result, metric: str = "", *, image_width: int = 200):
        self.result = result
        self._baseline = {s.id: s for s in result.baseline_samples}
        metrics = sample_metrics(result)
        if metric and metric not in metrics:
            raise ValueError(f"no per-sample values for metric {metric!r}; choose from {metrics}")
        self.sort_by = w.Dropdown(options=[("evaluation order", "")] + [(m, m) for m in metrics],
                                  value=metric or default_metric(result) or "", description="sort by")
        self.direction = w.ToggleButtons(options=[("worst first", True), ("best first", False)], value=True)
        n = len(result.samples)
        self.slider = w.IntSlider(value=0, min=0, max=max(n - 1, 0), description="sample", disabled=n == 0,
                                  continuous_update=False)
        self.prev_button = w.Button(description="◀ previous", layout=w.Layout(width="110px"))
        self.next_button = w.Button(description="next ▶", layout=w.Layout(width="110px"))
        self.roles = [r for r in ROLE_ORDER.get(result.task, ("input", "result", "reference"))
                      if has_role(result, r)]
        self.panels = {r: w.Image(format="png", layout=w.Layout(width=f"{image_width}px")) for r in self.roles}
        self.titles = {r: w.HTML(f"<b>{html.escape(role_label(result.task, r))}</b>") for r in self.roles}
        self.show_diff = result.task not in NO_PIXEL_MATCH and {"result", "reference"} <= set(self.roles)
        if self.show_diff:
            self.panels["diff"] = w.Image(format="png", layout=w.Layout(width=f"{image_width}px"))
            self.titles["diff"] = w.HTML()
        self.info = w.HTML()
        self.order: list = []
        self.diff_max: float | None = None
        controls = w.HBox([self.sort_by, self.direction])
        nav = w.HBox([self.prev_button, self.slider, self.next_button])
        images = w.HBox([w.VBox([self.titles[k], self.panels[k]]) for k in self.panels])
        super().__init__([controls, nav, images, self.info])
        self.sort_by.observe(self._resort, names="value")
        self.direction.observe(self._resort, names="value")
        self.slider.observe(lambda _: self.show(), names="value")
        self.prev_button.on_click(lambda _: self._step(-1))
        self.next_button.on_click(lambda _: self._step(+1))
        self._resort()

    @property
    def current(self):
        """The SampleRecord on screen (None for an empty run)."""
        return self.order[self.slider.value] if self.order else None

    def _step(self, delta: int) -> None:
        self.slider.value = min(max(self.slider.value + delta, self.slider.min), self.slider.max)

    def _resort(self, _=None) -> None:
        self.order = rank_samples(self.result, self.sort_by.value or None, worst=self.direction.value)
        self.direction.disabled = not self.sort_by.value
        if self.slider.value == 0:
            self.show()
        self.slider.value = 0

    def show(self) -> None:
        """Draw the current sample's images, caption and scores."""
        sample = self.current
        if sample is None:
            self.info.value = "<i>this run has no samples</i>"
            return
        images = {r: load_image(self.result, sample, r) for r in self.roles}
        for role in self.roles:
            self.panels[role].value = png_bytes(images[role]) if images[role] is not None else b""
        if self.show_diff:
            res, ref = images.get("result"), images.get("reference")
            title = f"|{role_label(self.result.task, 'result')} − {role_label(self.result.task, 'reference')}|"
            self.titles["diff"].value = f"<b>{html.escape(title)}</b>"
            self.diff_max = None
            if res is not None and ref is not None and res.shape == ref.shape:
                heat, self.diff_max = diff_heatmap(res, ref)
                self.panels["diff"].value = png_bytes(heat)
            else:
                self.panels["diff"].value = b""
        self.info.value = self._info_html(sample)

    def _info_html(self, sample) -> str:
        rank = f"{self.slider.value + 1}/{len(self.order)}"
        head = (f"<b>{html.escape(sample.id)}</b> &nbsp; #{sample.index} &nbsp; seed {sample.seed} &nbsp; "
                f"({rank}{', by ' + html.escape(self.sort_by.value) if self.sort_by.value else ''})")
        caption = f"<br><i>{html.escape(sample.caption)}</i>" if sample.caption else ""
        if self.show_diff:
            caption += (f"<br>heat map: black 0, brightest {self.diff_max:.0f}/255 (mean over RGB)"
                        if self.diff_max is not None else "<br>heat map: result and reference sizes differ")
        base = self._baseline.get(sample.id)
        names = list(dict.fromkeys([*sample.metrics, *(base.metrics if base else {})]))
        rows = "".join(
            f"<tr><td>{html.escape(n)}{' ↓' if n in LOWER_IS_BETTER else ''}</td><td>{_fmt(sample.metrics.get(n))}"
            f"</td>" + (f"<td>{_fmt(base.metrics.get(n))}</td>" if base else "") + "</tr>" for n in names)
        header = "<tr><th>metric</th><th>model</th>" + ("<th>baseline</th>" if base else "") + "</tr>"
        table = f"<table style='font-size:12px'>{header}{rows}</table>" if names else ""
        return f"<div>{head}{caption}{table}</div>"


def _fmt(value) -> str:
    return f"{value:.4g}" if is_number(value) else "n/a"


def sample_browser(result, metric: str = "", *, image_width: int = 200) -> SampleBrowser:
    """Browse every sample of `result`, sorted by `metric` ("" = the task's main per-sample metric)."""
    return SampleBrowser(result, metric, image_width=image_width)

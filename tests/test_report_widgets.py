"""Reports, plots and the sample browser on small hand-made runs (no model, no kernel)."""

from __future__ import annotations

import json

import ipywidgets
import nbformat
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from ldm_lab import plots, report, widgets
from ldm_lab.metrics import MetricResult
from ldm_lab.results import RunResult, SampleRecord, write_json

FID_REASON = "missing weights 'inception-fid': put it at models/metrics/...; ldm-lab weights fetch inception-fid."


def _png(folder, rel, value, size=16):
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return rel


def make_run(folder, task="inpainting", n=5, scale=7.5, lpips=True):
    """A RunResult with real PNGs: sample i has psnr_hole = 10 + i and lpips_hole_bbox = 0.5 - 0.1 i."""
    samples, baseline = [], []
    for i in range(n):
        files = {"result": _png(folder, f"inpainted_{i + 1:05d}.png", 20 * i),
                 "reference": _png(folder, f"inputs/original_{i + 1:05d}.png", 100)}
        if task != "text2img":
            files.update(input=_png(folder, f"inputs/masked_{i + 1:05d}.png", 0))
        metrics = {"psnr_hole": 10.0 + i, "lpips_hole_bbox": (0.5 - 0.1 * i) if lpips else None}
        samples.append(SampleRecord(i, f"s{i}", 100 + i, files, f"caption {i}", metrics))
        base_files = dict(files, result=_png(folder, f"baseline/b_{i + 1:05d}.png", 50))
        baseline.append(SampleRecord(i, f"s{i}", 100 + i, base_files, None, {"psnr_hole": 20.0, "lpips_hole_bbox": None}))
    model = {
        "psnr_hole": MetricResult("psnr_hole", 12.0, n=n, ci95=(11.0, 13.0), protocol="rgb,hole").to_dict(),
        "lpips_hole_bbox": MetricResult("lpips_hole_bbox", 0.05, n=n, ci95=(0.01, 0.09), protocol="alex").to_dict(),
        "fid": MetricResult.missing("fid", FID_REASON).to_dict(),
        "clip_cosine": MetricResult("clip_cosine", 0.1 + scale / 100, n=n, ci95=(0.1, 0.3), protocol="ViT").to_dict(),
    }
    metrics = {"task": task, "method": f"test {task}", "model": model,
               "baseline": {"psnr_hole": MetricResult("psnr_hole", 20.0, n=n, protocol="rgb,hole").to_dict()}}
    run = {"task": task, "parameters": {"scale": scale, "steps": 5, "output_dir": str(folder)},
           "timings": {"sampling_seconds": 1.5}}
    return RunResult(folder, task, run, metrics, samples, baseline)


@pytest.fixture()
def run(tmp_path):
    return make_run(tmp_path)


def test_metric_table_shows_ci_rating_baseline_and_unavailable_reason(run):
    table = report.metric_table(run)
    rows = {r["metric"]: r for r in table.rows}
    assert rows["psnr_hole"]["model [95% CI]"] == "12 [11, 13]"
    assert rows["psnr_hole"]["baseline [95% CI]"] == "20"
    assert rows["lpips_hole_bbox"]["rating"] == ""  # no rating table for the hole-box variant
    assert rows["fid"]["model [95% CI]"] == "unavailable" and rows["fid"]["note"] == FID_REASON
    assert rows["fid"]["rating"] == ""  # never a rating (or a number) for a metric that was not computed
    html = table._repr_html_()
    assert "ldm-lab weights fetch inception-fid" in html and "<table" in html
    assert "unavailable" in str(table)


def test_metric_table_rates_metrics_with_a_rating_table(tmp_path):
    run = make_run(tmp_path)
    run.metrics["model"]["lpips"] = MetricResult("lpips", 0.05, n=5, protocol="alex").to_dict()
    assert {r["metric"]: r["rating"] for r in report.metric_table(run).rows}["lpips"] == "excellent"


def test_run_summary_lists_parameters_and_timings(run):
    fields = {r["field"]: r["value"] for r in report.run_summary(run).rows}
    assert fields["parameters.scale"] == 7.5 and fields["timings.sampling_seconds"] == 1.5


def test_rank_samples_worst_and_best_follow_metric_direction(run):
    worst = [s.id for s in plots.rank_samples(run, "psnr_hole", worst=True)]
    assert worst == ["s0", "s1", "s2", "s3", "s4"]  # higher PSNR is better
    worst_lpips = [s.id for s in plots.rank_samples(run, "lpips_hole_bbox", worst=True)]
    assert worst_lpips == ["s0", "s1", "s2", "s3", "s4"]  # lower LPIPS is better
    assert [s.id for s in plots.rank_samples(run, "lpips_hole_bbox", worst=False)][0] == "s4"
    assert plots.default_metric(run) == "lpips_hole_bbox"


def test_plots_return_closed_figures(run):
    dist = plots.metric_distributions(run)
    assert isinstance(dist, Figure) and len([a for a in dist.axes if a.has_data()]) == 2
    grid = plots.sample_grid(run, metric="psnr_hole", k=2, worst=False)
    titles = [a.get_title() for a in grid.axes[:3]]
    assert titles == ["original", "masked", "inpainted"] and "best 2 by psnr_hole" in grid._suptitle.get_text()
    assert "s4" in grid.axes[0].get_ylabel()  # best PSNR first
    with pytest.raises(ValueError, match="choose from"):
        plots.sample_grid(run, metric="nonexistent")


def test_grid_without_per_sample_metrics_says_why(tmp_path):
    run = make_run(tmp_path, task="text2img", lpips=False)
    for s in [*run.samples, *run.baseline_samples]:
        s.metrics = {"clip_cosine": None}
    grid = plots.sample_grid(run, k=2)
    assert "no per-sample metric" in grid._suptitle.get_text()
    message = plots.metric_distributions(run)
    assert "no per-sample metric values" in message.axes[0].get_title(loc="left") and message.axes


def test_sample_browser_is_a_real_widget_and_sorts(run):
    browser = widgets.sample_browser(run)
    assert isinstance(browser, ipywidgets.VBox) and browser.model_id
    images = [w for w in _walk(browser) if isinstance(w, ipywidgets.Image)]
    assert len(images) == 5  # original, masked, result, baseline, |diff|
    assert all(bytes(img.value).startswith(b"\x89PNG") for img in images)
    assert browser.current.id == "s0"  # worst LPIPS first
    browser.sort_by.value = "psnr_hole"
    browser.direction.value = False  # best first
    assert browser.current.id == "s4" and browser.slider.value == 0
    browser.next_button.click()
    assert browser.current.id == "s3"
    assert "caption 3" in browser.info.value and "seed 103" in browser.info.value
    assert "<td>13</td><td>20</td>" in browser.info.value  # model and baseline scores side by side
    assert "heat map: black 0, brightest 40/255" in browser.info.value  # |60 - 100| for sample s3
    state = browser.get_state()
    assert state["_model_name"] == "VBoxModel"
    with pytest.raises(ValueError, match="choose from"):
        widgets.sample_browser(run, metric="nonexistent")


def test_browser_heat_map_only_where_pixels_correspond(tmp_path):
    t2i = widgets.sample_browser(make_run(tmp_path, task="text2img"))
    assert "diff" not in t2i.panels and set(t2i.panels) == {"result", "reference"}
    assert "heat map" not in t2i.info.value
    heat, peak = widgets.diff_heatmap(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 30, np.uint8))
    assert heat.shape == (4, 4, 3) and peak == 30.0


def test_compare_table_plots_and_csv(tmp_path):
    runs = [make_run(tmp_path / f"run{i}", scale=s) for i, s in enumerate((1.0, 3.0, 7.5))]
    table = report.compare_table(runs, output_dir=str(tmp_path / "cmp"))
    assert table.header[1] == "run0 (scale=1.0)"
    rows = {r["metric"]: r for r in table.rows}
    assert rows["fid"]["run2 (scale=7.5)"] == "unavailable" and "psnr_hole (baseline)" in rows
    assert (tmp_path / "cmp" / "compare.csv").read_text().startswith("metric,run0 (scale=1.0)")
    fig = plots.compare_metrics(runs, param="scale")
    assert [a.get_title() for a in fig.axes if a.has_data()] == ["psnr_hole", "lpips_hole_bbox", "clip_cosine"]
    why = plots.metric_tradeoff(runs, x_metric="fid", y_metric="clip_cosine")
    assert "ldm-lab weights fetch inception-fid" in "".join(t.get_text() for t in why.axes[0].texts)
    ok = plots.metric_tradeoff(runs, x_metric="psnr_hole", y_metric="clip_cosine")
    assert len(ok.axes[0].texts) == 3  # one labelled point per run


def test_load_runs_and_export_html(tmp_path):
    run = make_run(tmp_path / "run")
    write_json(tmp_path / "run" / "run.json", dict(run.run, samples=[s.to_dict() for s in run.samples]))
    write_json(tmp_path / "run" / "metrics.json", run.metrics)
    loaded = report.load_runs([tmp_path / "run"])[0]
    assert loaded.task == "inpainting" and len(loaded.samples) == 5
    with pytest.raises(ValueError, match="empty"):
        report.load_runs([])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", outputs=[
        nbformat.v4.new_output("execute_result", {"text/html": "<b>metric table</b>"}, execution_count=1)])])
    nbformat.write(nb, tmp_path / "run" / "report.ipynb")
    html = report.export_html(tmp_path / "run" / "report.ipynb")
    assert html.name == "report.html" and "<b>metric table</b>" in html.read_text()
    with pytest.raises(FileNotFoundError, match="no executed notebook"):
        report.export_html(tmp_path / "missing.ipynb")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["model"]["fid"]["unavailable"]


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_report_html_fetches_nothing_hides_code_and_live_widgets_and_embeds_the_browser(tmp_path):
    import re

    run = make_run(tmp_path / "run")
    run.samples[0].caption = "a </script><script>alert(1)</script> <!-- caption"
    write_json(tmp_path / "run" / "run.json", dict(run.run, samples=[s.to_dict() for s in run.samples]))
    write_json(tmp_path / "run" / "metrics.json", run.metrics)
    widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
              "text/plain": "VBox(children=(...))"}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("secret_code = 1", outputs=[
            nbformat.v4.new_output("execute_result", {"text/html": "<b>metric table</b>"}, execution_count=1),
            nbformat.v4.new_output("display_data", widget)]),
        nbformat.v4.new_code_cell("widgets.sample_browser(result)", metadata={"tags": ["live-only"]}, outputs=[
            nbformat.v4.new_output("display_data", {"text/html": "<i>live browser</i>"})])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {"big": "x" * 1000}}}}
    nbformat.write(nb, tmp_path / "run" / "report.ipynb")
    text = report.export_html(tmp_path / "run" / "report.ipynb", run_dir=tmp_path / "run").read_text()
    assert "<b>metric table</b>" in text
    assert "secret_code" not in text and "live browser" not in text and "VBox(children" not in text
    assert "widget-state" not in text and "x" * 1000 not in text
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=[\"']?(https?:)?//", text)  # no CDN, no network
    data = json.loads(re.search(r'id="ldm-browser-data">(.*?)</script>', text, re.S).group(1))
    assert [s["id"] for s in data["samples"]] == [s.id for s in run.samples]
    assert data["samples"][0]["files"]["result"] == run.samples[0].files["result"]
    assert data["samples"][0]["thumb"].startswith("data:image/webp;base64,")
    assert data["samples"][0]["caption"] == run.samples[0].caption and "alert(1)</script>" not in text
    without = report.export_html(tmp_path / "run" / "report.ipynb", tmp_path / "plain.html").read_text()
    assert "ldm-browser" not in without  # no run folder given: no browser


def test_large_photo_plots_become_jpeg_in_report_html_only(tmp_path):
    import base64
    import io

    import numpy as np
    from PIL import Image

    def png(array):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()

    rng = np.random.default_rng(0)
    photo = png(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8))  # ~480 kB of noise: a grid of samples
    plot = png(np.full((200, 300, 3), 255, np.uint8))  # a small line-plot-like PNG
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("grid", outputs=[
        nbformat.v4.new_output("display_data", {"image/png": photo, "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", {"image/png": plot, "text/plain": "<Figure>"})])])
    nbformat.write(nb, tmp_path / "report.ipynb")
    text = report.export_html(tmp_path / "report.ipynb").read_text()
    assert text.count("data:image/jpeg;base64,") == 1
    assert photo not in text and plot in text
    kept = nbformat.read(tmp_path / "report.ipynb", as_version=4).cells[0].outputs[0].data
    assert kept["image/png"] == photo  # the notebook itself is untouched

"""Real browser: JupyterLab on 127.0.0.1, headless Chromium (Debian's) driven by Playwright, Run All on a
task notebook, and the ipywidgets sample browser must render as widgets (not the `VBox(...)` text fallback).

Needs /usr/bin/chromium (`apt-get install -y chromium`; `make setup` installs it when run as root) and the
`playwright` Python package; never `playwright install` (it downloads a browser).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer at {url} within {timeout} s")


@pytest.fixture
def lab(tmp_path):
    """A private JupyterLab server (token, loopback, no autosave/news/update checks) on a copy of the repo's notebooks."""
    pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)")
    work = tmp_path / "work"
    shutil.copytree(REPO / "notebooks", work / "notebooks")
    config = tmp_path / "jupyter-config"
    settings = config / "lab" / "user-settings" / "@jupyterlab"
    (settings / "docmanager-extension").mkdir(parents=True)
    (settings / "docmanager-extension" / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    (settings / "notebook-extension").mkdir(parents=True)  # render every cell (no virtual scrolling)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = _free_port(), "ldm-lab-test-token"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTERLAB_SETTINGS_DIR=str(config / "lab" / "user-settings"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), LDM_LAB_REPO=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/api/status?token={token}", proc)
        yield f"http://127.0.0.1:{port}", token, work
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_run_all_renders_the_sample_browser_widget(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token, _ = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])  # Playwright gives every launch a fresh profile
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/notebooks/inpainting.ipynb?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                                   ".jp-Toolbar-kernelStatus", timeout=90_000)
            # Under CPU load JupyterLab may ask for a kernel instead of starting the default one.
            page.wait_for_timeout(2000)
            accept = page.locator(".jp-Dialog .jp-mod-accept")
            if accept.count() and accept.first.is_visible():
                accept.first.click()
            page.click("li.lm-MenuBar-item:has-text('Run')")
            page.click("li[data-command='runmenu:run-all']")
            # The sample browser is the last cell's output (earlier widgets, e.g. tqdm bars, don't count).
            last_output = page.locator(".jp-Notebook .jp-CodeCell").last.locator(".jp-OutputArea-output")
            try:
                last_output.locator(".jupyter-widgets img").first.wait_for(timeout=240_000)
            finally:
                page.screenshot(path=str(REPO / "reports" / "browser-test.png"))
            last_output.locator(".jupyter-widgets").first.scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(REPO / "reports" / "browser-test.png"))  # reports/ is git-ignored
            assert last_output.locator(".jupyter-widgets img").count() >= 1
            assert last_output.locator(".widget-dropdown select, .widget-slider, .widget-button").count() >= 1
            text = page.locator(".jp-NotebookPanel").inner_text()
            assert "VBox(children=" not in text and "HBox(children=" not in text
        finally:
            browser.close()


# ---- report.html: opened from a copy of the run folder with file://, no server, no kernel, no network ---------
@pytest.fixture(scope="module")
def report_copy(tmp_path_factory):
    """A finished inpainting run made by the CLI (its report.html), copied elsewhere as a mailed folder is."""
    pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)")
    from ldm_lab import cli
    from ldm_lab.data.demo import prepare_demo
    from ldm_lab.demo_models import ensure_random_models

    root = tmp_path_factory.mktemp("report")
    models, data = ensure_random_models(root / "models"), prepare_demo(root / "data")
    config, ckpt = models["inpainting"]
    argv = ["inpainting", "--data_dir", str(data["inpainting_dataset"]), "--config", str(config), "--model", str(ckpt),
            "--output_dir", str(root / "run"), "--max_samples", "6", "--steps", "2", "--resolution", "64",
            "--no-fid", "--no-lpips"]
    assert cli.main(argv) == 0
    shutil.copytree(root / "run", root / "copy")
    shutil.rmtree(root / "run")  # nothing may point back at the original folder
    return root / "copy"


def _csv(folder: Path) -> list[dict]:
    import csv

    with open(folder / "per_sample.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_report_html_is_offline_and_its_sample_browser_sorts_filters_and_opens(report_copy):
    from playwright.sync_api import sync_playwright

    rows = _csv(report_copy)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        requests, errors = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto((report_copy / "report.html").as_uri())
            table = page.locator("#ldm-browser tbody")
            ids = lambda: table.locator("td.id").all_inner_texts()
            assert len(ids()) == len(rows) == 6

            def sorted_ids(column, reverse):
                order = sorted(range(len(rows)), key=lambda i: (float(rows[i][column]), i))
                return [rows[i]["id"] for i in (order[::-1] if reverse else order)]

            for column in ("psnr_hole", "edge_consistency"):
                page.click(f"#ldm-browser th[data-col='{column}']")
                if "▲" not in page.inner_text(f"#ldm-browser th[data-col='{column}']"):
                    page.click(f"#ldm-browser th[data-col='{column}']")  # the column was already the sort key
                assert ids() == sorted_ids(column, reverse=False)
                page.click(f"#ldm-browser th[data-col='{column}']")
                ids_desc = sorted(range(len(rows)), key=lambda i: (-float(rows[i][column]), i))
                assert ids() == [rows[i]["id"] for i in ids_desc]

            table.locator("tr.row").nth(2).click()
            chosen = table.locator("tr.row").nth(2).get_attribute("data-index")
            n = int(chosen) + 1
            result = page.locator("#ldm-browser .panel figure[data-role='result'] img")
            assert result.get_attribute("src") == f"inpainted_{n:05d}.png"
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=result.element_handle())
            assert page.locator("#ldm-browser .panel figure").count() == 5  # 4 views + the heat map
            assert rows[int(chosen)]["id"] in page.inner_text("#ldm-browser .panel .title")
            page.keyboard.press("ArrowDown")
            assert table.locator("tr.selected").get_attribute("data-index") == \
                table.locator("tr.row").nth(3).get_attribute("data-index")

            values = sorted(float(r["psnr_hole"]) for r in rows)
            cut = (values[2] + values[3]) / 2
            page.fill("#ldm-browser input.filter", f"psnr_hole < {cut}")
            assert sorted(ids()) == sorted(r["id"] for r in rows if float(r["psnr_hole"]) < cut)
            assert len(ids()) == 3
            page.fill("#ldm-browser input.filter", f"psnr_hole < {cut} and id ~ {rows[0]['id']}")
            assert ids() == ([rows[0]["id"]] if float(rows[0]["psnr_hole"]) < cut else [])
            page.fill("#ldm-browser input.filter", "nosuch > 1")
            assert "unknown column" in page.inner_text("#ldm-browser .err")
            assert errors == []
        finally:
            browser.close()
    folder = report_copy.as_uri()
    outside = [u for u in requests if not (u.startswith(folder + "/") or u.startswith("data:"))]
    assert outside == [], outside
    assert any(u.endswith(".png") for u in requests)  # the panel's full-size images came from the folder

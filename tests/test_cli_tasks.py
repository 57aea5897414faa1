"""`ldm-lab inpainting|superres|text2img|compare|report` end to end on the tiny demo models, and bad inputs.

The three task commands run once per session (concurrently, as subprocesses: the real entry point,
papermill and a kernel each) with the older scripts' argument names; the tests then read their folders.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from ldm_lab import cli
from ldm_lab.metrics.result import PER_SAMPLE_COLUMNS
from ldm_lab.notebooks import PROJECT_ROOT

DATA, MODELS, CONFIGS = PROJECT_ROOT / "data" / "demo", PROJECT_ROOT / "models" / "demo", PROJECT_ROOT / "configs" / "tiny"
SHA256 = re.compile(r"[0-9a-f]{64}")


def _commands(root):
    common = ["--max_samples", "2", "--seed", "7", "--batch_size", "2"]
    return {
        "inpainting": ["inpainting", "--data_dir", DATA / "inpainting_dataset", "--config", CONFIGS / "inpainting.yaml",
                       "--model", MODELS / "inpainting.ckpt", "--output_dir", root / "inpainting", "--steps", "2",
                       "--resolution", "128", *common],
        "superres": ["superres", "--dataset_path", DATA / "super-resolution_dataset", "--config",
                     CONFIGS / "superres.yaml", "--checkpoint", MODELS / "superres.ckpt", "--scale", "4",
                     "--output_dir", root / "superres", "--steps", "2", *common],
        "text2img": ["text2img", "--dataset_root", DATA / "text2img_dataset", "--config_path", CONFIGS / "txt2img.yaml",
                     "--model_path", MODELS / "txt2img.ckpt", "--output_dir", root / "text2img", "--ddim_steps", "2",
                     "--scale", "3", "--plms", "--save_images_ratio", "1.0", *common],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{task: (run folder, completed process)} for one CLI run of each task."""
    from ldm_lab.data.demo import prepare_demo
    from ldm_lab.demo_models import demo_models

    prepare_demo(DATA)
    demo_models(MODELS)  # the committed trained checkpoints, checked
    root = tmp_path_factory.mktemp("cli")
    env = dict(os.environ, OMP_NUM_THREADS="1")  # three at once on a small machine
    procs = {task: subprocess.Popen([sys.executable, "-m", "ldm_lab", *map(str, argv)], cwd=root, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for task, argv in _commands(root).items()}
    done = {}
    for task, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        done[task] = (root / task, subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


EXPECTED_FILES = {
    "inpainting": ["inpainted_00001.png", "inpainted_00002.png", "evaluation_results.json"],
    "superres": ["urban100_x4_results.json", "sample_results/result_000_sr.png", "sample_results/result_000_hr.png",
                 "sample_results/result_001_sr.png", "sample_results/result_001_hr.png"],
    "text2img": ["generated_00001.png", "generated_00002.png", "evaluation_results.txt", "evaluation_results.json"],
}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(EXPECTED_FILES))
def test_task_command_writes_the_run_folder(runs, task):
    folder, proc = runs[task]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"report: {folder / 'report.html'}" in proc.stdout
    assert "[IPKernelApp]" not in proc.stderr and "Traceback" not in proc.stderr  # no kernel log noise
    assert "ldm-lab: checked " in proc.stderr and "new run of 2 images" in proc.stderr  # before the kernel
    common = ["run.json", "metrics.json", "per_sample.csv", "per_sample_baseline.csv", "report.ipynb", "report.html"]
    missing = [f for f in EXPECTED_FILES[task] + common if not (folder / f).is_file()]
    assert not missing, f"{task}: missing {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("task", list(EXPECTED_FILES))
def test_run_json_and_metrics_json_schema(runs, task):
    folder, _ = runs[task]
    run = json.loads((folder / "run.json").read_text())
    assert run["task"] == task and run["status"] == "complete"
    assert {"parameters", "model", "dataset", "sampling", "seeds", "device", "timings", "samples"} <= set(run)
    assert SHA256.fullmatch(run["model"]["config_sha256"]) and SHA256.fullmatch(run["model"]["checkpoint_sha256"])
    assert SHA256.fullmatch(run["dataset"]["fingerprint"]) and run["dataset"]["n"] == 2
    assert [s["seed"] for s in run["samples"]] == [7, 8]  # --seed 7: image i has seed 7 + i
    params = run["parameters"]
    assert params["seed"] == 7 and params["batch_size"] == 2 and params["max_samples"] == 2
    if task == "text2img":
        assert params["ddim_steps"] == 2 and params["sampler"] == "plms" and run["sampling"]["guidance_scale"] == 3.0
    else:
        assert params["steps"] == 2
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["model"] and set(metrics) >= {"model", "baseline"}
    for system in ("model", "baseline"):
        for name, entry in metrics[system].items():
            assert entry["name"] == name and "protocol" in entry
            if entry.get("value") is None:  # never a number for a metric that could not be computed
                assert isinstance(entry["unavailable"], str) and entry["unavailable"]
            else:
                assert isinstance(entry["value"], (int, float, str)) and "unavailable" not in entry
    assert "timings" not in json.dumps(metrics)


@pytest.mark.slow
@pytest.mark.parametrize("task", list(EXPECTED_FILES))
def test_per_sample_csv_and_executed_report(runs, task):
    folder, _ = runs[task]
    with open(folder / "per_sample.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and list(rows[0])[:2] == ["id", "file"]
    assert set(list(rows[0])[2:]) <= set(PER_SAMPLE_COLUMNS)
    if task != "superres":
        assert rows[0]["file"] == EXPECTED_FILES[task][0]
    nb = nbformat.read(folder / "report.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert nb.metadata["papermill"]["parameters"]["output_dir"] == str(folder)
    widget_views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widget_views, "the sample browser must be a real widget"
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata["widgets"]
    html = (folder / "report.html").read_text()
    assert "model [95% CI]" in html  # plots embedded (sample grids as JPEG, the rest PNG):
    assert html.count("data:image/png;base64") + html.count("data:image/jpeg;base64") >= 3


@pytest.mark.slow
def test_compare_and_report_commands(runs, tmp_path, capsys):
    folders = [str(runs[t][0]) for t in ("inpainting", "superres", "text2img")]
    assert all(runs[t][1].returncode == 0 for t in runs)
    assert cli.main(["compare", *folders, "--output_dir", str(tmp_path / "mixed")]) == 2
    assert "differ in task ('inpainting' vs 'superres')" in _one_line_error(capsys)
    assert not (tmp_path / "mixed").exists()
    again = tmp_path / "inpainting-again"
    shutil.copytree(runs["inpainting"][0], again)
    assert cli.main(["compare", folders[0], str(again), "--output_dir", str(tmp_path / "cmp"), "--param", "steps"]) == 0
    assert (tmp_path / "cmp" / "report.html").is_file()
    header = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()[0]
    assert header.startswith("metric,") and "inpainting" in header and "inpainting-again" in header
    paired = (tmp_path / "cmp" / "paired.csv").read_text()
    assert "psnr_hole" in paired and "all deltas are 0" in paired  # a run against its own copy
    folder = runs["inpainting"][0]
    (folder / "report.html").unlink()
    assert cli.main(["report", str(folder)]) == 0
    assert (folder / "report.html").is_file() and str(folder / "report.html") in capsys.readouterr().out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert re.match(r"ldm-lab( \w+)?: error: ", err[-1]), err
    return err[-1]


def test_missing_dataset_is_one_line(tmp_path, capsys):
    assert cli.main(["inpainting", "--data_dir", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "o")]) == 2
    assert _one_line_error(capsys) == f"ldm-lab: error: `--data_dir` not found: {tmp_path / 'nope'}"
    assert not (tmp_path / "o").exists()  # refused before anything ran
    assert cli.main(["superres", "--checkpoint", "missing.ckpt"]) == 2
    assert "`--checkpoint` not found:" in _one_line_error(capsys)


@pytest.mark.parametrize("argv, message", [
    (["inpainting", "--stepz", "3"], "unrecognized arguments: --stepz 3"),
    (["superres", "--scale", "3"], "argument --scale: invalid choice: 3"),
    (["text2img", "--sampler", "euler"], "argument --sampler: invalid choice: 'euler'"),
    (["compare"], "the following arguments are required: RUN_DIR"),
])
def test_bad_arguments_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2 and message in _one_line_error(capsys)


def test_compare_and_report_refuse_folders_without_a_run(tmp_path, capsys):
    assert cli.main(["compare", str(tmp_path)]) == 2
    assert "is not a run folder (no run.json)" in _one_line_error(capsys)
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "no report.ipynb in" in _one_line_error(capsys)


@pytest.mark.slow
def test_a_failing_notebook_reports_into_a_new_folder_and_never_into_an_existing_run(runs, tmp_path, monkeypatch,
                                                                                      capsys):
    """With the CLI's checks skipped (as if a check had missed it), a wrong config/checkpoint pair fails in the
    notebook's run cell. A new folder gets the failed report; a finished run keeps every file as it was and
    the failed notebook stays in the staging folder named by the error."""
    from ldm_lab import commands
    from tests.test_tasks_support import tree

    monkeypatch.setattr(commands, "preflight", lambda task, parameters: None)
    argv = ["inpainting", "--model", str(MODELS / "superres.ckpt"), "--max_samples", "1", "--steps", "1",
            "--resolution", "128"]
    out = tmp_path / "bad"
    assert cli.main([*argv, "--output_dir", str(out)]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("ldm-lab: error: ValueError: `model` does not fit `config`")
    assert f"partial outputs kept in {out / 'report.ipynb'}" in line
    nb = nbformat.read(out / "report.ipynb", as_version=4)
    assert [o.ename for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert (out / "report.html").is_file()

    finished = tmp_path / "finished"
    shutil.copytree(runs["inpainting"][0], finished)
    before = tree(finished, "**/*")
    assert cli.main([*argv, "--output_dir", str(finished)]) == 2
    kept = re.search(r"partial outputs kept in (\S+)\]", _one_line_error(capsys)).group(1)
    assert tree(finished, "**/*") == before
    assert not kept.startswith(str(finished)) and nbformat.read(kept, as_version=4).cells


def test_task_options_come_from_the_runner_signatures():
    import inspect

    from ldm_lab.commands import task_options
    from ldm_lab.tasks import TASKS

    for task, runner in TASKS.items():
        signature = inspect.signature(runner).parameters
        for name, default in task_options(task).items():
            assert default == signature[name].default, f"{task} --{name}"
    parser = cli.build_parser()
    args = parser.parse_args(["text2img", "--steps", "9", "--ddim_eta", "0.5"])
    assert args.ddim_steps == 9 and args.eta == 0.5 and args.sampler == "ddim" and args.fid is True
    assert parser.parse_args(["superres", "--no-lpips"]).lpips is False
    assert parser.parse_args(["inpainting"]).resolution == "512"  # the runner's default, not the demo notebook's


@pytest.mark.slow
def test_sweep_makes_one_run_per_value_then_their_comparison(tmp_path, capsys):
    out = tmp_path / "guidance"
    argv = ["sweep", "text2img", "--scale", "1", "7.5", "--dataset_root", str(DATA / "text2img_dataset"),
            "--config_path", str(CONFIGS / "txt2img.yaml"), "--model_path", str(MODELS / "txt2img.ckpt"),
            "--max_samples", "3", "--ddim_steps", "2", "--no-fid", "--no-clip", "--output_dir", str(out)]
    assert cli.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare", "scale=1", "scale=7.5"]
    for value, scale in (("1", 1.0), ("7.5", 7.5)):
        run = json.loads((out / f"scale={value}" / "run.json").read_text())
        assert run["status"] == "complete" and run["resume_key"]["guidance_scale"] == scale
        assert (out / f"scale={value}" / "report.html").is_file()
    nb = nbformat.read(out / "compare" / "report.ipynb", as_version=4)
    assert nb.metadata["papermill"]["parameters"]["param"] == "scale"
    assert (out / "compare" / "report.html").is_file() and (out / "compare" / "paired.csv").is_file()
    err = capsys.readouterr().err
    assert err.count("ldm-lab: checked ") == 2 and err.index("scale=7.5: new run") < err.index("executing")

"""A finished or partial run folder is never touched by a refused, failing or badly called rerun (issue 11).

Every check happens in the CLI process before a kernel starts: the tests patch jupyter_client's kernel
launcher so that a kernel start is recorded (and fails), and assert that none happened. Folder contents
are compared by the sha256 of every file, before and after.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from ldm_lab import cli, commands
from ldm_lab.commands import preflight
from ldm_lab.notebooks import run_task
from tests.conftest_data import truncate
from tests.test_tasks_support import (  # noqa: F401 (offline_env is an autouse fixture)
    Interrupt,
    demo_data,
    demo_models,
    interrupt_after,
    offline,
    offline_env,
    read_text,
    tree,
)

UMASK = 0o027  # not the usual 022: the modes below can only come from the umask


class KernelStarted(Exception):
    pass


@pytest.fixture
def kernels(monkeypatch):
    """Record every kernel launch (and fail it): the tests assert there was none."""
    launched: list[str] = []

    async def launch(self, cmd, **kwargs):
        launched.append(" ".join(cmd))
        raise KernelStarted("a kernel was started")

    monkeypatch.setattr(LocalProvisioner, "launch_kernel", launch)
    return launched


def _argv(data_dir, out, **options) -> list[str]:
    config, ckpt = demo_models()["inpainting"]
    args = {"data_dir": data_dir, "output_dir": out, "config": config, "model": ckpt, "max_samples": 2,
            "steps": 2, "resolution": 64, "batch_size": 1, "no-lpips": None, "no-fid": None, **options}
    return ["inpainting", *[x for k, v in args.items() for x in ([f"--{k}"] if v is None else [f"--{k}", str(v)])]]


def _params(argv: list[str]) -> dict:
    """The runner arguments the CLI passes for `argv` (as `run_task_command` does)."""
    args = cli.build_parser().parse_args(argv)
    return {k: getattr(args, k) for k in commands.task_options("inpainting")}


def _dataset(root):
    """A copy of the demo inpainting set (3 photos, the older script's layout) that a test may damage."""
    shutil.copytree(demo_data()["inpainting_dataset"], root)
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(dataset, finished run folder made by the CLI with a kernel, partial folder: 1 of 2 images), all
    written under umask 027."""
    root = tmp_path_factory.mktemp("rerun")
    old = os.umask(UMASK)
    try:
        with offline():
            data = _dataset(root / "data")
            assert cli.main(_argv(data, root / "finished")) == 0
            with pytest.MonkeyPatch.context() as mp:  # the runner in this process, stopped after image 1 (writes
                # inline: with writer threads image 2 could land before the stop reaches the sampler)
                interrupt_after(mp, 1)
                with pytest.raises(Interrupt):
                    run_task("inpainting", **_params(_argv(data, root / "partial", write_workers=0)), progress=False)
    finally:
        os.umask(old)
    return data, root / "finished", root / "partial"


def everything(folder) -> dict[str, str]:
    return tree(folder, "**/*")


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    return err[-1]


def test_fixture_folders_are_a_finished_and_a_partial_run(folders):
    _, finished, partial = folders
    assert json.loads(read_text(finished / "run.json"))["status"] == "complete"
    assert (finished / "report.ipynb").is_file() and (finished / "report.html").is_file()
    assert json.loads(read_text(partial / "run.json"))["status"] == "running"
    assert (partial / "inpainted_00001.png").is_file() and not (partial / "inpainted_00002.png").exists()


def test_results_follow_the_umask(folders):
    _, finished, partial = folders
    files = [p for folder in (finished, partial) for p in folder.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".png", ".json", ".csv", ".ipynb", ".html"}
    modes = {p.relative_to(finished.parent).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~UMASK)}, modes


@pytest.mark.parametrize("which", ["finished", "partial"])
@pytest.mark.parametrize("options, expected", [
    ({"steps": 4}, "holds a run with different output-affecting parameters: steps: run.json has 2, now 4"),
    ({"seed": 5}, "seed: run.json has 0, now 5"),
    ({"max_samples": -1}, "`--max_samples` must be an integer >= 0, got -1"),
    ({"batch_size": 0}, "`--batch_size` must be an integer >= 1, got 0"),
    ({"eta": -1}, "`--eta` must be a finite number >= 0"),
    ({"resolution": 100}, "`--resolution` must be 'native' or a positive multiple of"),
    ({"model": "SR"}, "UNet input channels: config 7, checkpoint 6"),
])
def test_refused_reruns_touch_nothing_and_start_no_kernel(folders, which, options, expected, kernels, capsys):
    data, finished, partial = folders
    folder = finished if which == "finished" else partial
    if options.get("model") == "SR":
        options = {"model": demo_models()["superres"][1]}
    before = everything(folder)
    assert cli.main(_argv(data, folder, **options)) == 2
    line = _error(capsys)
    assert line.startswith("ldm-lab: error: ") and expected in line, line
    assert everything(folder) == before
    assert kernels == []


def test_mismatch_message_is_one_short_line(folders, kernels, capsys):
    data, _, _ = folders
    out = folders[1].parent / "never"
    assert cli.main(_argv(data, out, model=demo_models()["superres"][1])) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and len(err) < 400, err
    assert "`--model` does not fit `--config`" in err and "UNet input channels: config 7, checkpoint 6" in err
    assert not out.exists() and kernels == []


def test_output_dir_that_is_a_file(tmp_path, kernels, capsys):
    data = demo_data()["inpainting_dataset"]
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert cli.main(_argv(data, target)) == 2
    assert _error(capsys) == f"ldm-lab: error: `--output_dir` is an existing file, not a folder: {target}"
    assert target.read_text() == "mine" and kernels == []


@pytest.mark.parametrize("which", ["finished", "partial", "new"])
def test_truncated_input_is_reported_before_any_file_is_written(folders, tmp_path, which, kernels, capsys):
    _, finished, partial = folders
    data = _dataset(tmp_path / "data")
    second = sorted((data / "images").iterdir())[1]
    truncate(second)
    folder = {"finished": finished, "partial": partial, "new": tmp_path / "new"}[which]
    before = everything(folder) if folder.exists() else None
    assert cli.main(_argv(data, folder)) == 2
    line = _error(capsys)
    assert f"images/{second.name}" in line and "--skip-invalid" in line, line
    assert (everything(folder) if folder.exists() else None) == before
    assert kernels == []


def test_a_crash_after_the_checks_leaves_a_finished_folder_as_it_was(folders, kernels, capsys):
    """The positive control of `kernels`: a valid rerun reaches the kernel start, which fails here; the
    finished run's files, its report included, stay byte-identical and the failure is one line."""
    import tempfile
    from pathlib import Path

    data, finished, _ = folders
    before = everything(finished)
    staged = lambda: set(Path(tempfile.gettempdir()).glob(f"ldm-lab-{finished.name}-*"))
    staging_before = staged()
    assert cli.main(_argv(data, finished)) == 1
    assert len(kernels) == 1
    assert "KernelStarted: a kernel was started" in _error(capsys)
    assert everything(finished) == before
    assert staged() == staging_before  # the staging folder is removed after a crash too


def test_skip_invalid_leaves_the_bad_file_out_and_records_it(tmp_path, kernels, capsys):
    data = _dataset(tmp_path / "data")
    bad = sorted((data / "images").iterdir())[0]
    truncate(bad)
    params = _params(_argv(data, tmp_path / "run", max_samples=1, **{"skip-invalid": None}))
    assert params["skip_invalid"] is True
    check = preflight("inpainting", params)
    assert check.planned == 1 and [name for name, _ in check.skipped] == [f"images/{bad.name}"]
    assert not (tmp_path / "run").exists()


def test_resume_rule_finished_inputs_must_be_unchanged_unfinished_may_change(folders, tmp_path):
    """The partial folder finished image 1; image 2 may take a replaced file, image 1's may not change."""
    _, _, partial = folders
    work = tmp_path / "partial"
    shutil.copytree(partial, work)
    data = _dataset(tmp_path / "data")
    first, second, third = sorted((data / "images").iterdir())[:3]
    argv = _argv(data, work)
    check = preflight("inpainting", _params(argv))
    assert (check.resumed, check.finished, check.planned) == (True, 1, 2)

    shutil.copyfile(third, second)  # image 2's input replaced: image 2 is not finished, so the run continues
    assert preflight("inpainting", _params(argv)).finished == 1
    finished_image = tree(work, "inpainted_00001.png")
    with offline():
        result = run_task("inpainting", **_params(argv), progress=False)
    assert result.run["status"] == "complete" and (work / "inpainted_00002.png").is_file()
    assert tree(work, "inpainted_00001.png") == finished_image

    snapshot = everything(work)
    shutil.copyfile(third, first)  # a finished image's input changed: refused, naming it
    with pytest.raises(ValueError, match=r"1 finished image\(s\) whose sample or inputs differ.*image 1 \(.*"
                                         r"input files changed"):
        preflight("inpainting", _params(argv))
    assert everything(work) == snapshot


def test_fetch_without_network_is_one_line(tmp_path, capsys):
    """No traceback when the release cannot be reached (a refused local port stands in for no network)."""
    url = "http://127.0.0.1:9/sr_bsr.zip"
    assert cli.main(["models", "fetch", "bsr_sr", "--source", url, "--models-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"ldm-lab: error: cannot download {url} (")
    assert "no network? Give a local copy with --source" in err


@pytest.mark.parametrize("argv, expected", [
    (["superres", "--tile_size", "3"], "`--tile_size` must be a multiple of 2 for this UNet, got 3"),
    (["superres", "--max_samples", "-2"], "`--max_samples` must be an integer >= 0, got -2"),
    (["text2img", "--scale", "-1"], "`--scale` (guidance) must be a finite number > 0, got -1.0"),
    (["text2img", "--save_images_ratio", "2"], "`--save_images_ratio` must be in (0, 1], got 2.0"),
    (["text2img", "--ddim_steps", "0"], "`--ddim_steps` must be an integer >= 1, got 0"),
])
def test_argument_errors_of_every_task_start_no_kernel(argv, expected, tmp_path, kernels, capsys):
    out = tmp_path / "out"
    assert cli.main([*argv, "--output_dir", str(out)]) == 2
    assert _error(capsys) == f"ldm-lab: error: {expected}"
    assert not out.exists() and kernels == []


def test_skipped_inputs_are_recorded_in_run_json_and_the_report(tmp_path):
    from ldm_lab import report

    data = _dataset(tmp_path / "data")
    bad = sorted((data / "images").iterdir())[0]
    truncate(bad)
    result = run_task("inpainting", **_params(_argv(data, tmp_path / "run", max_samples=1, **{"skip-invalid": None})),
                      progress=False)
    assert result.run["parameters"]["skip_invalid"] is True and len(result.samples) == 1
    assert [name for name, _ in result.run["dataset"]["skipped"]] == [f"images/{bad.name}"]
    rows = [r for r in report.run_summary(result).rows if r["field"] == "dataset.skipped"]
    assert len(rows) == 1 and rows[0]["value"].startswith(f"images/{bad.name}: ")


def test_sweep_finds_the_one_swept_option():
    flag, values, rest = commands.sweep_values("text2img", ["--max_samples", "2", "--scale", "1", "3", "7.5", "--plms"])
    assert (flag, values, rest) == ("--scale", ["1", "3", "7.5"], ["--max_samples", "2", "--plms"])
    with pytest.raises(ValueError, match="exactly one option with several values.*found --scale, --steps"):
        commands.sweep_values("text2img", ["--scale", "1", "3", "--steps", "2", "4"])
    with pytest.raises(ValueError, match="found none"):
        commands.sweep_values("text2img", ["--scale", "1"])


def test_a_sweep_checks_every_value_before_the_first_run(tmp_path, kernels, capsys):
    out = tmp_path / "sweep"
    assert cli.main(["sweep", "text2img", "--scale", "1", "-1", "--output_dir", str(out)]) == 2
    assert _error(capsys) == "ldm-lab: error: `--scale` (guidance) must be a finite number > 0, got -1.0"
    assert not out.exists() and kernels == []


def test_compare_refuses_runs_of_different_tasks_before_a_kernel(folders, tmp_path, kernels, capsys):
    from ldm_lab.results import write_json

    _, finished, _ = folders
    other = tmp_path / "other"
    shutil.copytree(finished, other)
    run = json.loads(read_text(other / "run.json"))
    run["dataset"]["fingerprint"] = "0" * 64
    write_json(other / "run.json", run)
    assert cli.main(["compare", str(finished), str(other), "--output_dir", str(tmp_path / "cmp")]) == 2
    assert "differ in dataset fingerprint" in _error(capsys)
    assert not (tmp_path / "cmp").exists() and kernels == []


def test_demo_fetches_missing_metric_weights_only_when_their_host_answers(monkeypatch, tmp_path, capsys):
    """No network in tests: the host check is a refused local port, or a stub that answers."""
    import socket

    from ldm_lab import weights

    monkeypatch.setenv("LDM_LAB_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    fetched = []
    monkeypatch.setattr(weights, "fetch", lambda name: fetched.append(name) or tmp_path / name)

    def refused(address, timeout):
        assert timeout <= 3
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    commands._fetch_metric_weights()
    err = capsys.readouterr().err
    assert "not reachable" in err and "the demo runs offline" in err and fetched == []

    class Answer:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: Answer())
    commands._fetch_metric_weights()
    assert fetched == [n for n in weights.REGISTRY if weights.find(n) is None] and fetched
    assert cli.build_parser().parse_args(["demo", "--offline"]).offline is True


def test_folders_from_before_per_image_digests_are_checked_by_their_dataset_fingerprint(folders, tmp_path):
    from ldm_lab.results import write_json

    data, finished, _ = folders
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    run = json.loads(read_text(old / "run.json"))
    run["resume_key"].pop("dataset_selection")
    run["resume_key"]["dataset_fingerprint"] = run["dataset"]["fingerprint"]
    for sample in run["samples"]:
        sample.pop("inputs_sha256")
    write_json(old / "run.json", run)
    check = preflight("inpainting", _params(_argv(data, old)))
    assert (check.resumed, check.finished) == (True, 2)
    run["resume_key"]["dataset_fingerprint"] = "0" * 64  # the dataset changed since that run
    write_json(old / "run.json", run)
    before = everything(old)
    with pytest.raises(ValueError, match="dataset_fingerprint: run.json has '0000"):
        preflight("inpainting", _params(_argv(data, old)))
    assert everything(old) == before

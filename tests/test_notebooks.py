"""The notebooks are thin, parameterized and clean in git (STYLE 13, 14), and `run_notebook` is strict.

Executing the real notebooks is covered by `pytest --nbval-lax notebooks/` (their defaults) and by the CLI
end-to-end tests (tests/test_cli_tasks.py); here the kernels run only tiny synthetic notebooks.
"""

from __future__ import annotations

import ast
import inspect

import nbformat
import pytest

from ldm_lab import notebooks
from ldm_lab.notebooks import NotebookCellError, notebook_parameters, run_notebook

NOTEBOOK_DIR = notebooks.NOTEBOOK_DIR
PATHS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TASKS = ("inpainting", "superres", "text2img")
VIEW_ONLY = {"grid_metric", "grid_k", "smoke", "run_id"}  # notebook parameters that are not runner arguments
RUNNER_ONLY = {"progress", "metric_weights", "check_only"}  # runner arguments the notebooks do not expose
DEMO_SIZED = {"max_samples", "steps", "ddim_steps", "resolution", "eta"}  # demo values in the notebooks, said so
ANNOTATIONS = {"str", "int", "float", "bool", "str | None", "list[str]"}


def test_the_four_notebooks_exist():
    assert [p.name for p in PATHS] == ["compare_runs.ipynb", "inpainting.ipynb", "super_resolution.ipynb",
                                       "text2img.ipynb"]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs before commit"
    assert not {"widgets", "papermill"} & set(nb.metadata), f"{path.name}: executed-notebook metadata"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_title_then_typed_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    title = nb.cells[0]
    assert title.cell_type == "markdown"
    lines = title.source.splitlines()
    assert lines[0].startswith("# ") and lines[1].startswith("> "), "cell 1: `# Title` and `> subtitle`"
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    params = notebook_parameters(path)
    assert params["smoke"].annotation == "bool" and params["smoke"].default is False
    assert params["run_id"].annotation == "str" and params["run_id"].default == ""
    for p in params.values():
        assert p.annotation in ANNOTATIONS and p.help, f"{p.name}: typed literal with a trailing comment"
        assert "=" not in p.help, f"{p.name}: papermill cannot read a line with two '='"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_every_later_cell_calls_one_ldm_lab_function(path):
    nb = nbformat.read(path, as_version=4)
    imported: set[str] = set()
    for cell in nb.cells[2:]:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
        if all(isinstance(n, ast.ImportFrom) and n.module == "ldm_lab" for n in tree.body):
            imported |= {a.name for n in tree.body for a in n.names}
            continue
        assert len(tree.body) == 1, f"one statement per cell: {cell.source!r}"
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        assert len(calls) == 1 and tree.body[0].value is calls[0], f"one call per cell: {cell.source!r}"
        func = calls[0].func
        assert isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
        assert func.value.id in imported, f"{cell.source!r} does not call an ldm_lab function"


@pytest.mark.parametrize("task", TASKS)
def test_parameters_mirror_the_runner_signature(task):
    from ldm_lab.tasks import TASKS as RUNNERS

    runner = inspect.signature(RUNNERS[task]).parameters
    params = notebook_parameters(task)
    assert set(params) - VIEW_ONLY == set(runner) - RUNNER_ONLY
    for name in set(params) - VIEW_ONLY:
        default = runner[name].default
        if name in DEMO_SIZED and params[name].default != default:
            assert f"the runner's default is {default!r}".replace("'", '"') in params[name].help.replace("'", '"')
        else:
            assert params[name].default == default, f"{task}.{name}: notebook default differs from the runner's"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_every_parameter_is_used(path):
    cells = nbformat.read(path, as_version=4).cells[2:]
    used = {n.id for c in cells if c.cell_type == "code" for n in ast.walk(ast.parse(c.source))
            if isinstance(n, ast.Name)}
    assert set(notebook_parameters(path)) - used == set()


def test_unknown_or_mistyped_parameters_are_errors_before_running():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['stepz'\] for inpainting.ipynb; known: \[.*'steps'"):
        run_notebook("inpainting", parameters={"stepz": 3})
    with pytest.raises(ValueError, match="parameter `steps` must be int, got '3'"):
        run_notebook("inpainting", parameters={"steps": "3"})
    with pytest.raises(ValueError, match="must be bool"):
        run_notebook("inpainting", parameters={"overwrite": 1})
    with pytest.raises(FileNotFoundError, match="known notebooks"):
        run_notebook("nowhere")


def _toy_notebook(tmp_path, body: str):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Toy\n> a test notebook"),
        nbformat.v4.new_code_cell('x: int = 1  # a number\nsmoke: bool = False  # quick\nrun_id: str = ""  # id',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('print("before", x, smoke)'),
        nbformat.v4.new_code_cell(body),
        nbformat.v4.new_code_cell('print("after")'),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "toy.ipynb"
    nbformat.write(nb, path)
    return path


def _stdout(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_run_notebook_injects_parameters_and_smoke(tmp_path):
    out = run_notebook(_toy_notebook(tmp_path, "pass"), tmp_path / "out" / "report.ipynb", parameters={"x": 5},
                       smoke=True)
    assert _stdout(out) == "before 5 True\nafter\n"


def test_failing_cell_raises_its_error_and_keeps_partial_outputs(tmp_path):
    path = _toy_notebook(tmp_path, 'raise FileNotFoundError("`data_dir` not found: /nowhere\\nmore detail")')
    out = tmp_path / "out" / "report.ipynb"
    with pytest.raises(NotebookCellError) as info:
        run_notebook(path, out)
    err = info.value
    assert err.ename == "FileNotFoundError" and err.output_path == out
    assert str(err).startswith("FileNotFoundError: `data_dir` not found: /nowhere (+1 lines) [toy.ipynb, cell")
    assert "partial outputs kept in" in str(err) and "\n" not in str(err)
    assert _stdout(out) == "before 1 False\n"  # cells before the failure kept, none after it


def test_run_task_applies_smoke_run_id_and_repository_paths(monkeypatch, tmp_path):
    calls = []

    def fake_runner(*, data_dir="data/demo/x", output_dir="reports/demo/x", max_samples=0, steps=50, seed=0):
        calls.append(dict(data_dir=data_dir, output_dir=output_dir, max_samples=max_samples, steps=steps))
        return "result"

    monkeypatch.setattr("ldm_lab.tasks.TASKS", {"fake": fake_runner})
    monkeypatch.setattr(notebooks, "ensure_demo_inputs", lambda kwargs: None)
    assert notebooks.run_task("fake", smoke=True, run_id="r1", steps=10) == "result"
    root = notebooks.PROJECT_ROOT
    assert calls[-1] == dict(data_dir=str(root / "data/demo/x"), output_dir=str(root / "reports" / "r1"),
                             max_samples=2, steps=2)
    notebooks.run_task("fake", data_dir=str(tmp_path), max_samples=1)
    assert calls[-1]["data_dir"] == str(tmp_path) and calls[-1]["max_samples"] == 1 and calls[-1]["steps"] == 50
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        notebooks.run_task("nope")


def test_ensure_demo_runs_uses_the_task_notebook_defaults(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(notebooks, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(notebooks, "run_task", lambda task, **kw: calls.append((task, kw)))
    (tmp_path / "reports" / "demo" / "text2img").mkdir(parents=True)
    (tmp_path / "reports" / "demo" / "text2img" / "metrics.json").write_text("{}")
    made = notebooks.ensure_demo_runs(["reports/demo/superres", "reports/demo/text2img", str(tmp_path / "mine")])
    assert made == [str(tmp_path / "reports/demo/superres")] and len(calls) == 1
    task, kw = calls[0]
    defaults = notebook_parameters("superres")
    assert task == "superres" and kw["steps"] == defaults["steps"].default
    assert kw["max_samples"] == defaults["max_samples"].default and "grid_k" not in kw
    assert notebooks.ensure_demo_runs(["reports/demo/superres"], smoke=True) == [] and len(calls) == 1
    made = notebooks.ensure_demo_runs(["reports/demo/guidance/scale=3", "reports/demo/samplers/sampler=dpmpp2m",
                                       "reports/demo/guidance/steps=3"])  # not the swept option: only read
    assert made == [str(tmp_path / "reports/demo/guidance/scale=3"), str(tmp_path / "reports/demo/samplers/sampler=dpmpp2m")]
    (t2i, kw), (inp, kw2) = calls[1:]
    assert (t2i, kw["scale"], type(kw["scale"])) == ("text2img", 3.0, float)
    assert (inp, kw2["sampler"], kw2["steps"]) == ("inpainting", "dpmpp2m", notebook_parameters("inpainting")["steps"].default)
    assert kw2["eta"] == 0.0 != notebook_parameters("inpainting")["eta"].default  # the notebook's eta is DDIM's


def test_demo_sweep_keeps_the_notebooks_ddim_eta_and_runs_other_samplers_deterministic():
    defaults = notebooks.notebook_defaults("inpainting")
    ddim = notebooks.demo_sweep_parameters("inpainting", "sampler", "ddim")
    dpm = notebooks.demo_sweep_parameters("inpainting", "sampler", "dpmpp2m")
    assert ddim == defaults and defaults["eta"] == 1.0
    assert dpm == dict(defaults, sampler="dpmpp2m", eta=0.0)
    assert notebooks.demo_sweep_parameters("text2img", "scale", 3.0) == dict(notebooks.notebook_defaults("text2img"), scale=3.0)

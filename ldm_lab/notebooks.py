"""Run the task notebooks: papermill from the CLI, the same calls as "Run All" in JupyterLab (design §1).

`run_notebook` executes a notebook with papermill. Papermill only warns about a parameter that the
notebook does not declare; here it is an error naming it and listing the known ones (STYLE 14). A cell
that fails raises `NotebookCellError` with that cell's error; the partly executed notebook stays at the
output path. `run_task` is what a task notebook's run cell calls: it resolves the demo defaults
(relative to the repository, whatever the kernel's working directory), applies `smoke` and `run_id`,
prepares the demo models and data when the defaults point at them, and calls the task runner.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import logging
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = {
    "inpainting": "inpainting.ipynb",
    "superres": "super_resolution.ipynb",
    "text2img": "text2img.ipynb",
    "compare": "compare_runs.ipynb",
}
# The kernel's own log off below CRITICAL (e.g. ipykernel's "running over TCP without encryption", or
# "KeyboardInterrupt caught in kernel" when papermill stops it); cell outputs and errors are unaffected.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]
# The demo's sweeps (`ldm-lab demo`): folder under reports/demo -> (task, swept option); values below it.
DEMO_SWEEPS = {"guidance": ("text2img", "scale"), "samplers": ("inpainting", "sampler")}
SMOKE_LIMITS = {"max_samples": 2, "steps": 2, "ddim_steps": 2}  # smoke: at most 2 images, 2 steps
PATH_ARGS = ("data_dir", "dataset_path", "dataset_root", "output_dir", "config", "config_path", "model",
             "checkpoint", "model_path", "tokenizer")
_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "None": type(None),
          "list[str]": list, "list[int]": list, "list[float]": list, "dict": dict, "list": list}


@dataclass(frozen=True)
class Parameter:
    """One line of a notebook's `parameters` cell: `name: annotation = default  # help`."""

    name: str
    annotation: str
    default: Any
    help: str


class NotebookCellError(RuntimeError):
    """A notebook cell raised; the partly executed notebook is kept at `output_path`."""

    def __init__(self, notebook: Path, output_path: Path, cell: int | None, ename: str, evalue: str,
                 traceback: list[str] | None = None):
        self.notebook, self.output_path, self.cell, self.ename, self.evalue = (
            notebook, output_path, cell, ename, evalue)
        self.traceback = list(traceback or [])
        lines = [line for line in str(evalue).strip().splitlines() if line.strip()] or [""]
        more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
        self.headline = f"{ename}: {lines[0]}{more}"  # one line
        super().__init__(self.where(output_path))

    def where(self, kept: Path) -> str:
        """The one-line message with the place where the partly executed notebook is kept."""
        return f"{self.headline} [{self.notebook.name}, cell {self.cell}; partial outputs kept in {kept}]"


def notebook_path(name: str | Path) -> Path:
    """`inpainting` / `compare` / a path -> the notebook file (FileNotFoundError if it is missing)."""
    path = NOTEBOOK_DIR / NOTEBOOKS[name] if name in NOTEBOOKS else Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {path} not found; known notebooks: {sorted(NOTEBOOKS)}")
    return path


def notebook_parameters(path: str | Path) -> dict[str, Parameter]:
    """The typed literals of the cell tagged `parameters`, in order (papermill's convention).

    Read as plain JSON (nbformat v4 on disk), not through nbformat, whose schema validator takes seconds to
    import: the CLI builds its options from these before it can report a bad argument.
    """
    path = notebook_path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: expected one cell tagged `parameters`, found {len(cells)}")
    source = cells[0]["source"]
    source = "".join(source) if isinstance(source, list) else source
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    params: dict[str, Parameter] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value):
            raise ValueError(f"{path}: parameters cell line {node.lineno} is not `name: type = literal`")
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise ValueError(f"{path}: parameter `{node.target.id}` is not a literal") from None
        params[node.target.id] = Parameter(node.target.id, ast.unparse(node.annotation), default,
                                           comments.get(node.lineno, ""))
    return params


def check_parameters(path: str | Path, parameters: dict[str, Any]) -> None:
    """ValueError for names the notebook does not declare or values of the wrong type."""
    known = notebook_parameters(path)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {notebook_path(path).name}; "
                         f"known: {sorted(known)}")
    for name, value in parameters.items():
        annotation = known[name].annotation
        allowed = tuple(t for part in annotation.split("|") for t in _as_tuple(_TYPES.get(part.strip())))
        bad_bool = isinstance(value, bool) and bool not in allowed
        if allowed and (not isinstance(value, allowed) or bad_bool):
            raise ValueError(f"parameter `{name}` must be {annotation}, got {value!r}")


def _as_tuple(t) -> tuple:
    return () if t is None else t if isinstance(t, tuple) else (t,)


def run_notebook(path: str | Path, output_path: str | Path | None = None, *,
                 parameters: dict[str, Any] | None = None, smoke: bool = False,
                 cwd: str | Path = PROJECT_ROOT, kernel_name: str | None = None,
                 progress: bool = False) -> Path:
    """Execute `path` with papermill into `output_path` (default `reports/<run_id or stem>/report.ipynb`).

    Raises ValueError for unknown parameters before anything runs, NotebookCellError when a cell fails.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path = notebook_path(path)
    params = dict(parameters or {})
    if smoke:
        params["smoke"] = True
    check_parameters(path, params)
    if output_path is None:
        output_path = PROJECT_ROOT / "reports" / (params.get("run_id") or path.stem) / "report.ipynb"
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    # names and values were checked above (with `ast`), more strictly than papermill's line regex does
    logs = [logging.getLogger("papermill"), logging.getLogger("papermill.translators")]
    for log in logs:
        log.addFilter(_drop_unknown_parameter_warning)
    try:
        papermill.execute_notebook(str(path), str(output_path), parameters=params, cwd=str(cwd),
                                   kernel_name=kernel_name, progress_bar=progress, log_output=False,
                                   extra_arguments=KERNEL_ARGS)
    except PapermillExecutionError as err:
        raise NotebookCellError(path, output_path, err.exec_count, err.ename, err.evalue,
                                err.traceback) from None
    finally:
        for log in logs:
            log.removeFilter(_drop_unknown_parameter_warning)
    return output_path


def _drop_unknown_parameter_warning(record: logging.LogRecord) -> bool:
    # papermill's regex does not read annotations such as `str | None`, nor `=` inside strings or comments;
    # check_parameters has the final say.
    return not record.getMessage().startswith(("Passed unknown parameter", "Unable to parse line"))


def _resolve(value: str) -> str:
    """A relative path means relative to the repository (the kernel may run in notebooks/)."""
    return str(PROJECT_ROOT / value) if value and not Path(value).is_absolute() else value


def ensure_demo_inputs(kwargs: dict[str, Any]) -> None:
    """Build the demo data when `kwargs` point at it and it is missing; a missing demo checkpoint is an error
    that says how to restore it (they are committed, trained files)."""
    demo_data, demo_models = PROJECT_ROOT / "data" / "demo", PROJECT_ROOT / "models" / "demo"
    paths = [Path(str(v)) for k, v in kwargs.items() if k in PATH_ARGS and v]
    if any(p.is_relative_to(demo_data) and not p.exists() for p in paths):
        from ldm_lab.data.demo import prepare_demo

        prepare_demo(demo_data)
    if any(p.is_relative_to(demo_models) and not p.exists() for p in paths):
        from ldm_lab.demo_models import demo_models as check_demo_models

        check_demo_models(demo_models)


def run_task(task: str, *, smoke: bool = False, run_id: str = "", **kwargs):
    """Run the `task` runner (ldm_lab.tasks.TASKS) as a notebook does; returns its RunResult.

    `smoke` caps the run at 2 images and 2 steps; `run_id` writes to `reports/<run_id>/`.
    """
    from ldm_lab.tasks import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(TASKS)}")
    signature = inspect.signature(TASKS[task]).parameters
    kwargs = {k: _resolve(v) if k in PATH_ARGS and isinstance(v, str) else v
              for k, v in {**{k: p.default for k, p in signature.items() if k in PATH_ARGS}, **kwargs}.items()}
    if run_id:
        kwargs["output_dir"] = str(PROJECT_ROOT / "reports" / run_id)
    if smoke:
        for name, cap in SMOKE_LIMITS.items():
            if name in signature:
                kwargs[name] = min(kwargs.get(name, signature[name].default) or cap, cap)
    ensure_demo_inputs(kwargs)
    return TASKS[task](**kwargs)


def notebook_defaults(task: str) -> dict[str, Any]:
    """The runner arguments a task notebook passes when run on its own defaults (as `ldm-lab demo` does)."""
    from ldm_lab.tasks import TASKS

    runner = inspect.signature(TASKS[task]).parameters
    return {k: p.default for k, p in notebook_parameters(task).items() if k in runner}


def demo_sweep_parameters(task: str, option: str, value: Any) -> dict[str, Any]:
    """One run of a demo sweep (`ldm-lab demo`, `ensure_demo_runs`): the notebook's defaults with `option` set to
    `value`; a sampler other than DDIM runs with eta 0 (the notebooks' eta is DDIM's; the others are
    deterministic and refuse any other)."""
    parameters = dict(notebook_defaults(task), **{option: value})
    if option == "sampler" and value != "ddim" and "eta" in parameters:
        parameters["eta"] = 0.0
    return parameters


def ensure_demo_runs(run_dirs: list[str], *, smoke: bool = False) -> list[str]:
    """Produce each missing demo run (`reports/demo/<task>`) as its notebook's defaults do; others are untouched.

    With `smoke` nothing is produced (a smoke check only reads run folders).
    """
    from ldm_lab.tasks import TASKS

    made: list[str] = []
    if smoke:
        return made
    demo = PROJECT_ROOT / "reports" / "demo"
    for run_dir in run_dirs:
        path = Path(_resolve(str(run_dir)))
        if (path / "metrics.json").is_file():
            continue
        if path.parent == demo and path.name in TASKS:
            # the task notebook on its defaults: the same run (and resume key) as `ldm-lab demo`
            run_task(path.name, **dict(notebook_defaults(path.name), output_dir=str(path)))
            made.append(str(path))
        elif path.parent.parent == demo and path.parent.name in DEMO_SWEEPS and "=" in path.name:
            task, option = DEMO_SWEEPS[path.parent.name]
            name, value = path.name.split("=", 1)
            if name == option:  # one value of a demo sweep: the notebook's defaults and that value
                default = notebook_defaults(task)[option]
                typed = type(default)(value) if isinstance(default, (int, float)) and not isinstance(default, bool) \
                    else value
                run_task(task, **dict(demo_sweep_parameters(task, option, typed), output_dir=str(path)))
                made.append(str(path))
    return made

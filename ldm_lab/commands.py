"""CLI for the workbench: `ldm-lab inpainting|superres|text2img|demo|compare|report`.

A task command is a thin shell over its notebook (design §1): its options are built from the runner's
signature (the one place where defaults live, STYLE 5) for the parameters the notebook declares; papermill
executes notebooks/<task>.ipynb into OUTPUT_DIR/report.ipynb and nbconvert writes OUTPUT_DIR/report.html.
The older scripts' argument names are kept (`--data_dir --model`, `--dataset_path --checkpoint`,
`--dataset_root --config_path --model_path --ddim_steps --plms --ddim_eta`).
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from ldm_lab.notebooks import (
    NOTEBOOKS,
    PATH_ARGS,
    PROJECT_ROOT,
    NotebookCellError,
    notebook_defaults,
    notebook_parameters,
    run_notebook,
)

TASK_HELP = {
    "inpainting": "fill masked holes and measure them (notebooks/inpainting.ipynb)",
    "superres": "4x / 2x super-resolution and its metrics (notebooks/super_resolution.ipynb)",
    "text2img": "captions -> images, FID/KID/PR and CLIP score (notebooks/text2img.ipynb)",
}
EXAMPLES = {
    "inpainting": "examples:\n  ldm-lab inpainting --max_samples 2 --steps 5 --output_dir reports/try\n"
    "  ldm-lab inpainting --data_dir data/inpainting_dataset --config configs/ldm/inpainting_big.yaml \\\n"
    "      --model models/ldm/inpainting_big/last.ckpt --output_dir evaluation/inpainting_real",
    "superres": "examples:\n  ldm-lab superres --scale 4 --max_samples 2 --output_dir reports/sr-try\n"
    "  ldm-lab superres --dataset_path data/super-resolution_dataset --config configs/ldm/bsr_sr.yaml \\\n"
    "      --checkpoint models/ldm/bsr_sr/model.ckpt --scale 2 --output_dir evaluation_sr",
    "text2img": "examples:\n  ldm-lab text2img --max_samples 2 --ddim_steps 5 --output_dir reports/t2i-try\n"
    "  ldm-lab text2img --dataset_root data/text2img_dataset --config_path configs/ldm/txt2img-1p4B-eval.yaml \\\n"
    "      --model_path models/ldm/text2img-large/model.ckpt --scale 7.5 --output_dir evaluation/text2img",
}
# Older spellings kept as extra flags of the same option (design §9: `--ddim_steps` is the T2I `--steps`).
ALIASES = {"inpainting": {"skip_invalid": ["--skip-invalid"]}, "superres": {"skip_invalid": ["--skip-invalid"]},
           "text2img": {"ddim_steps": ["--steps"], "eta": ["--ddim_eta"], "skip_invalid": ["--skip-invalid"]}}
CHOICES = {"scale": {"superres": (2, 4)}, "tile": {"superres": ("auto", "tiled", "whole")},
           "caption_policy": {"text2img": ("first", "all", "random")}}
# Notebook-only parameters that are not CLI options (the view of the report, or set by the CLI itself).
NOT_OPTIONS = frozenset({"smoke", "run_id", "grid_metric", "grid_k", "progress"})
DEMO_NOTE = re.compile(r"\s*\(demo value[^)]*\)")  # notebook comments on demo-sized values
DEMO_OUT, COMPARE_OUT = "reports/demo", "reports/compare"  # relative to the repository
BAD_INPUT = frozenset({"ValueError", "FileNotFoundError", "FileExistsError", "NotADirectoryError",
                       "PermissionError", "KeyError"})


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _runner(task: str):
    from ldm_lab.tasks import TASKS

    return TASKS[task]


def _choices(task: str, name: str):
    if name == "sampler":
        from ldm.samplers import SAMPLERS

        return sorted(SAMPLERS)
    if name == "dtype":
        from ldm_lab.device import DTYPES

        return list(DTYPES)
    if name == "batching":
        from ldm_lab.tasks.sampling import BATCHING

        return list(BATCHING)
    return CHOICES.get(name, {}).get(task)


def task_options(task: str) -> dict[str, object]:
    """CLI option name -> default: the runner's parameters that the task notebook declares, in order."""
    params = notebook_parameters(task)
    options = {}
    for name, p in inspect.signature(_runner(task)).parameters.items():
        if name in params and name not in NOT_OPTIONS:
            options[name] = params[name].default if p.default is inspect.Parameter.empty else p.default
    return options


def add_task_parser(subparsers, task: str) -> argparse.ArgumentParser:
    """`ldm-lab TASK`: one option per runner parameter, default and help from the single source."""
    runner, params = _runner(task), notebook_parameters(task)
    parser = subparsers.add_parser(task, help=TASK_HELP[task], formatter_class=_Formatter,
                                   description=sys.modules[runner.__module__].__doc__ or TASK_HELP[task],
                                   epilog=EXAMPLES[task])
    for name, default in task_options(task).items():
        flags = [f"--{name}", *ALIASES.get(task, {}).get(name, [])]
        helptext = DEMO_NOTE.sub("", params[name].help) or name  # the CLI default is the runner's
        if isinstance(default, bool):
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction if default else "store_true",
                                default=default, help=helptext)
            continue
        kind = type(default) if isinstance(default, (int, float)) else str
        parser.add_argument(*flags, type=kind, default=default, choices=_choices(task, name),
                            metavar=name.upper() if name in PATH_ARGS else None, help=helptext)
    if task == "text2img":
        parser.add_argument("--plms", dest="sampler", action="store_const", const="plms", default=argparse.SUPPRESS,
                            help="the older script's flag: same as --sampler plms")
    parser.add_argument("--smoke", action="store_true", help="at most 2 images and 2 steps (a quick check)")
    parser.set_defaults(func=lambda args: run_task_command(task, args))
    return parser


def _absolute(value, default):
    """A path the user typed is relative to their working directory; a default, to the repository."""
    if isinstance(value, str) and value and value != default and not Path(value).is_absolute():
        return str(Path(os.getcwd()) / value)
    return value


def _in_project(path: str) -> Path:
    """A default (relative) path is relative to the repository."""
    return Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path


REPORT_FILES = ("report.ipynb", "report.html")


def _run_and_export(notebook: str, output_dir: Path, parameters: dict, *, debug: bool = False) -> int:
    """papermill -> report.ipynb, nbconvert -> report.html, both made in a staging folder outside OUTPUT_DIR.

    They replace OUTPUT_DIR's report only when the notebook ran to the end. A notebook that fails goes into
    OUTPUT_DIR only if the folder held nothing before (a new run's report then shows its error); an existing
    run folder keeps its files as they were, and the failed notebook stays in the staging folder, named in
    the error.
    """
    from ldm_lab.report import export_html

    new_folder = not output_dir.exists() or not any(output_dir.iterdir())
    staging = Path(tempfile.mkdtemp(prefix=f"ldm-lab-{output_dir.name}-"))
    keep_staging = False
    print(f"ldm-lab: executing notebooks/{NOTEBOOKS[notebook]} -> {output_dir / 'report.ipynb'}", file=sys.stderr)
    try:
        try:
            run_notebook(notebook, staging / "report.ipynb", parameters=parameters, progress=True)
        except NotebookCellError as err:
            kept = staging
            if (staging / "report.ipynb").is_file():
                export_html(staging / "report.ipynb")  # no sample browser: the folder's images are not this report's
                if new_folder:
                    kept = _install_report(staging, output_dir)
            keep_staging = kept == staging
            if debug:
                print("\n".join(err.traceback), file=sys.stderr)
            print(f"ldm-lab: error: {err.where(kept / 'report.ipynb')}", file=sys.stderr)
            return 2 if err.ename in BAD_INPUT else 1
        export_html(staging / "report.ipynb", run_dir=output_dir if notebook in TASK_HELP else None)
        print(f"report: {_install_report(staging, output_dir) / 'report.html'}")
        return 0
    finally:
        if not keep_staging:  # also after an interrupt or a kernel that died: nothing left in the temp folder
            shutil.rmtree(staging, ignore_errors=True)


def _install_report(staging: Path, output_dir: Path) -> Path:
    """Copy report.ipynb and report.html from `staging` into `output_dir` (each replaced atomically)."""
    from ldm_lab.data.files import write_bytes_atomic

    for name in REPORT_FILES:
        if (staging / name).is_file():
            write_bytes_atomic(output_dir / name, (staging / name).read_bytes())
    return output_dir


def preflight(task: str, parameters: dict):
    """Everything the run checks before its first image, here in the CLI process and before any kernel starts:
    arguments, paths, the config/checkpoint pairing, every input image decoded, the resume rule. Raises the
    runner's error (one line); nothing is written. Returns the runner's `RunCheck`."""
    from ldm_lab.notebooks import run_task

    try:
        check = run_task(task, check_only=True, **parameters)
    except (ValueError, FileNotFoundError, NotADirectoryError, FileExistsError, PermissionError) as err:
        # the runner names its arguments (`max_samples`); here they are options (`--max_samples`)
        flags = re.sub(r"`(\w+)`", lambda m: f"`--{m[1]}`" if m[1] in parameters else m[0], str(err))
        raise type(err)(flags) from None
    print(f"ldm-lab: checked {check}", file=sys.stderr)
    return check


def check_inputs(parameters: dict, defaults: dict) -> None:
    """A path the user typed must exist (one clear line now, instead of a failing cell after a kernel start).

    Defaults are left to the runner: the demo data and checkpoints are built on first use.
    """
    for name, value in parameters.items():
        if name in PATH_ARGS and name != "output_dir" and value and value != defaults[name]:
            if not Path(value).exists():
                raise FileNotFoundError(f"`--{name}` not found: {value}")


def task_parameters(task: str, args) -> dict:
    """The notebook parameters of parsed task options (typed paths relative to the working directory)."""
    options = task_options(task)
    parameters = {name: _absolute(getattr(args, name), default) if name in PATH_ARGS else getattr(args, name)
                  for name, default in options.items()}
    check_inputs(parameters, options)
    if getattr(args, "smoke", False):
        parameters["smoke"] = True
    return parameters


def run_task_command(task: str, args) -> int:
    """Execute the task notebook with the parsed options."""
    parameters = task_parameters(task, args)
    output_dir = _in_project(parameters["output_dir"])
    preflight(task, parameters)
    from ldm_lab import distributed

    if distributed.launched_by_torchrun():
        if not sample_sharded(task, parameters):
            return 0  # ranks > 0: their shard is written; rank 0 measures and reports
        parameters["overwrite"] = False  # the folder was just (re)started: the notebook resumes it
    return _run_and_export(task, output_dir, parameters, debug=getattr(args, "debug", False))


def sample_sharded(task: str, parameters: dict) -> bool:
    """Under torchrun: this rank samples its shard with the runner (ldm_lab.distributed); True on rank 0.

    Every rank calls the task runner directly (the notebook is single-process); the runner returns after
    a collective that waits for all ranks' images. Rank 0 then leaves the process group, and the caller
    executes the notebook on the finished folder: its runner resumes with nothing left to sample and
    measures from the PNGs on disk (metrics.json, per_sample.csv, report.ipynb, report.html).
    """
    from ldm_lab import distributed
    from ldm_lab.notebooks import run_task

    kwargs = dict(parameters)
    shard = distributed.init(kwargs.get("device", "auto"))
    try:
        if shard.sharded:
            kwargs["device"] = distributed.device_for(kwargs.get("device", "auto"), shard.local_rank)
            run_task(task, **kwargs)
    finally:
        distributed.shutdown()
    return shard.is_main


# The demo's questions: a text-to-image guidance sweep and inpainting DDIM vs DPM-Solver++(2M) at equal steps
# with the trained tiny demo models (models/demo/, scripts/train_demo_models.py), plus one super-resolution run.
DEMO_PLAN = (("superres", None, ()), ("text2img", "scale", (1.0, 3.0, 7.5)), ("inpainting", "sampler", ("ddim", "dpmpp2m")))


def _demo(args) -> int:
    """Demo models and data if missing; the metric weights when the network answers; a super-resolution run,
    a text-to-image guidance sweep and an inpainting sampler comparison, each sweep with its comparison."""
    from ldm_lab.data.demo import prepare_demo
    from ldm_lab.demo_models import demo_models
    from ldm_lab.notebooks import DEMO_SWEEPS, demo_sweep_parameters

    out = _in_project(_absolute(args.out, DEMO_OUT))
    demo_models(PROJECT_ROOT / "models" / "demo")  # the committed trained checkpoints, checked
    prepare_demo(PROJECT_ROOT / "data" / "demo")
    if not args.offline:
        _fetch_metric_weights()
    folder_of = {task: name for name, (task, _) in DEMO_SWEEPS.items()}
    plan = []  # (task, parameters) of every run: the notebook's defaults, one folder per swept value
    for task, option, values in DEMO_PLAN:
        if option is None:
            runs = [(notebook_defaults(task), out / task)]
        else:  # folders named as `ensure_demo_runs` reads them: scale=7.5, sampler=ddim
            runs = [(demo_sweep_parameters(task, option, v), out / folder_of[task] / f"{option}={v:g}"
                     if isinstance(v, float) else out / folder_of[task] / f"{option}={v}") for v in values]
        for parameters, folder in runs:
            plan.append((task, dict(parameters, output_dir=str(folder), overwrite=args.overwrite)))
    if code := _check_then_run(plan, debug=args.debug):
        return code
    reports = [Path(params["output_dir"]) for _, params in plan]
    for task, option, _ in DEMO_PLAN:
        if option is None:
            continue
        parent = out / folder_of[task]
        compare = {"run_dirs": [p["output_dir"] for t, p in plan if t == task], "output_dir": str(parent / "compare"),
                   "param": option}
        if task == "inpainting":
            compare.update(x_metric="psnr_hole", y_metric="ssim_hole_bbox")
        if code := _run_and_export("compare", parent / "compare", compare, debug=args.debug):
            return code
        reports.append(parent / "compare")
    print(f"\ndemo reports in {out}:")
    for folder in reports:
        print(f"  {folder / 'report.html'}")
    print("open them in a browser (no server needed), or the notebooks in JupyterLab: make lab")
    return 0


def _check_then_run(runs: list[tuple[str, dict]], *, debug: bool) -> int:
    """Check every (task, parameters) run (`preflight`) before the first starts, then run each notebook."""
    for task, parameters in runs:
        preflight(task, parameters)
    for task, parameters in runs:
        if code := _run_and_export(task, Path(parameters["output_dir"]), parameters, debug=debug):
            return code
    return 0


def _fetch_metric_weights(timeout: float = 3.0) -> None:
    """Download missing metric weights (Inception, VGG16, AlexNet/LPIPS, CLIP) when their host answers within
    `timeout` seconds; otherwise say so and go on (those metrics are then reported as unavailable)."""
    import socket
    from urllib.parse import urlparse

    from ldm_lab import weights

    missing = [name for name in weights.REGISTRY if weights.find(name) is None]
    if not missing:
        return
    host = urlparse(weights.REGISTRY[missing[0]].url).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as err:
        print(f"ldm-lab: {host} not reachable ({err}): the demo runs offline; FID/KID/LPIPS/CLIP score are reported "
              f"as unavailable ({len(missing)} metric weight files missing; `ldm-lab weights fetch` on a connected "
              "machine)", file=sys.stderr)
        return
    for name in missing:
        try:
            print(f"ldm-lab: fetching {name} -> {weights.fetch(name)}", file=sys.stderr)
        except (OSError, ValueError) as err:
            print(f"ldm-lab: {name} not fetched ({err}); its metrics are reported as unavailable", file=sys.stderr)


def _compare(args) -> int:
    """Execute notebooks/compare_runs.ipynb over RUN_DIRs of one task on the same samples: metric table with
    CIs, paired per-sample differences (paired bootstrap CI, Wilcoxon), FID/KID differences, the most
    improved and regressed samples, metric plots and the trade-off plot."""
    run_dirs = [Path(_absolute(d, None)) for d in args.run_dirs]
    for d in run_dirs:
        if not (d / "run.json").is_file():
            raise FileNotFoundError(f"{d} is not a run folder (no run.json); give folders written by "
                                    "`ldm-lab inpainting|superres|text2img`")
    from ldm_lab.compare import check_comparable
    from ldm_lab.report import load_runs

    check_comparable(load_runs(run_dirs))  # here, not after a kernel start
    output_dir = _in_project(_absolute(args.output_dir, COMPARE_OUT))
    parameters = {"run_dirs": [str(d) for d in run_dirs], "output_dir": str(output_dir),
                  "param": args.param, "x_metric": args.x_metric, "y_metric": args.y_metric}
    return _run_and_export("compare", output_dir, parameters, debug=args.debug)


def sweep_values(task: str, rest: list[str]) -> tuple[str, list[str], list[str]]:
    """(option flag, its values, the other arguments) of `--OPTION v1 v2 ...` among `rest` (one option only)."""
    swept = []
    for i, token in enumerate(rest):
        if token.startswith("--"):
            values = list(itertools.takewhile(lambda t: not t.startswith("--"), rest[i + 1:]))
            if len(values) > 1:
                swept.append((i, token, values))
    if len(swept) != 1:
        found = ", ".join(flag for _, flag, _ in swept) or "none"
        raise ValueError(f"`sweep {task}` needs exactly one option with several values, e.g. --scale 1 3 7.5; "
                         f"found {found}")
    i, flag, values = swept[0]
    if "--output_dir" == flag:
        raise ValueError("`--output_dir` names the sweep's parent folder; sweep another option")
    return flag, values, rest[:i] + rest[i + 1 + len(values):]


def _sweep(args) -> int:
    """`ldm-lab sweep TASK --OPTION v1 v2 ... [task options]`: one run folder per value under --output_dir
    (each resumable as usual), every run checked before the first starts, then the comparison report."""
    parser = argparse.ArgumentParser(prog=f"ldm-lab sweep {args.task}")
    task_parser = add_task_parser(parser.add_subparsers(), args.task)
    flag, values, rest = sweep_values(args.task, args.rest)
    output_dir = args.output_dir
    if "--output_dir" in rest:  # given among the task options
        at = rest.index("--output_dir")
        output_dir, rest = rest[at + 1], rest[:at] + rest[at + 2:]
    parent = _in_project(_absolute(output_dir or f"reports/sweep-{flag.lstrip('-')}", None))
    runs = []
    for value in values:
        parsed = task_parser.parse_args([*rest, flag, value, "--output_dir", str(parent / f"{flag.lstrip('-')}={value}")])
        runs.append(task_parameters(args.task, parsed))
    dests = [name for name in runs[0] if len({repr(r[name]) for r in runs}) > 1 and name != "output_dir"]
    if code := _check_then_run([(args.task, parameters) for parameters in runs], debug=args.debug):
        return code
    compare = {"run_dirs": [r["output_dir"] for r in runs], "output_dir": str(parent / "compare"),
               "param": dests[0] if dests else ""}
    return _run_and_export("compare", parent / "compare", compare, debug=args.debug)


def _report(args) -> int:
    """Re-render RUN_DIR/report.html from the executed RUN_DIR/report.ipynb (nbconvert)."""
    from ldm_lab.report import export_html

    run_dir = Path(args.run_dir)
    if not (run_dir / "report.ipynb").is_file():
        raise FileNotFoundError(f"no report.ipynb in {run_dir}; run `ldm-lab <task> --output_dir {run_dir}` "
                                "(it resumes finished images) to execute the notebook first")
    print(f"report: {export_html(run_dir / 'report.ipynb', run_dir=run_dir)}")
    return 0


def register(subparsers) -> None:
    """Add the task commands, `demo`, `compare` and `report` to the `ldm-lab` parser."""
    for task in TASK_HELP:
        add_task_parser(subparsers, task)
    demo = subparsers.add_parser("demo", help="tiny models + demo data -> a SR run, a guidance sweep, a sampler comparison",
                                 description=_demo.__doc__, formatter_class=_Formatter,
                                 epilog="example:\n  ldm-lab demo   # what `make demo` runs")
    demo.add_argument("--out", default=DEMO_OUT, help="where the reports go (relative: to the repository)")
    demo.add_argument("--overwrite", action="store_true", help="rerun from scratch instead of resuming")
    demo.add_argument("--offline", action="store_true", default=bool(os.environ.get("LDM_LAB_OFFLINE")),
                      help="never try to download the metric weights (default when $LDM_LAB_OFFLINE is set)")
    demo.set_defaults(func=_demo)

    cmp_params = notebook_parameters("compare")
    compare = subparsers.add_parser("compare", help="metric table and plots across run folders",
                                    description=_compare.__doc__,
                                    formatter_class=_Formatter,
                                    epilog="example:\n  ldm-lab compare runs/scale1 runs/scale3 runs/scale7.5 "
                                    "--param scale --output_dir reports/guidance")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="output folders of task runs")
    compare.add_argument("--output_dir", default=COMPARE_OUT, help="where report.ipynb, report.html, compare.csv go")
    for name in ("param", "x_metric", "y_metric"):
        compare.add_argument(f"--{name}", default=cmp_params[name].default, help=cmp_params[name].help)
    compare.set_defaults(func=_compare)

    sweep = subparsers.add_parser("sweep", help="one run per value of one option, then their comparison",
                                  description=_sweep.__doc__, formatter_class=_Formatter,
                                  epilog="examples:\n  ldm-lab sweep text2img --scale 1 3 7.5 --max_samples 50 "
                                  "--output_dir reports/guidance\n  ldm-lab sweep inpainting --sampler ddim dpmpp2m "
                                  "--steps 25 --output_dir reports/samplers")
    sweep.add_argument("task", choices=list(TASK_HELP))
    sweep.add_argument("--output_dir", default="", help="parent folder: OPTION=VALUE/ per run and compare/ "
                       "(default reports/sweep-OPTION)")
    sweep.add_argument("rest", nargs=argparse.REMAINDER, metavar="--OPTION V1 V2 ... [task options]")
    sweep.set_defaults(func=_sweep)

    report = subparsers.add_parser("report", help="re-render RUN_DIR/report.html from RUN_DIR/report.ipynb",
                                   description=_report.__doc__,
                                   formatter_class=_Formatter)
    report.add_argument("run_dir", metavar="RUN_DIR", help="output folder of a task or compare run")
    report.set_defaults(func=_report)

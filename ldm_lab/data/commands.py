"""CLI for `ldm-lab data check` and `ldm-lab prepare {demo,superres,text2img,inpainting}`.

Each command is a thin shell over the function of the same job; defaults are read from its signature.
"""

from __future__ import annotations

import argparse
import inspect
import sys

EXAMPLES = {
    "check": "examples:\n  ldm-lab data check data/demo/inpainting_dataset\n"
    "  ldm-lab data check data/super-resolution_dataset --scales 4",
    "demo": "example:\n  ldm-lab prepare demo   # writes data/demo/*_dataset",
    "superres": "examples:\n  ldm-lab prepare superres --source ~/Downloads/urban100.zip\n"
    "  ldm-lab prepare superres --source DIV2K_valid_HR/ --out data/div2k --scales 2 4",
    "text2img": "example:\n  ldm-lab prepare text2img --source ~/Downloads/flickr30k.zip --skip-invalid",
    "inpainting": "examples:\n  ldm-lab prepare inpainting --source hf:Brvcket/sdxl-inpainting-lights\n"
    "  ldm-lab prepare inpainting --source rows.parquet --image-column photo --seed 1",
}


def _default(func, name: str):
    """Default of parameter `name` of `func`: the one place where it is defined."""
    return inspect.signature(func).parameters[name].default


def _parser(subparsers, name: str, func, help_text: str, example: str) -> argparse.ArgumentParser:
    """A sub-command whose --help shows the docstring of the module that does the work."""
    return subparsers.add_parser(
        name,
        help=help_text,
        description=sys.modules[func.__module__].__doc__ or help_text,
        epilog=example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _check(args) -> int:
    from ldm_lab.data.check import check_dataset

    report = check_dataset(
        args.path,
        scales=args.scales,
        skip_invalid=args.skip_invalid,
        caption_policy=args.caption_policy,
        crop_to_multiple=args.crop_to_multiple,
    )
    print(report)
    return 0


def _demo(args) -> int:
    from ldm_lab.data.demo import prepare_demo

    for name, path in prepare_demo(args.out, overwrite=args.overwrite).items():
        print(f"{name}: {path}")
    return 0


def _superres(args) -> int:
    from ldm_lab.data.prepare_files import prepare_superres

    print(prepare_superres(args.source, args.out, scales=args.scales, overwrite=args.overwrite))
    return 0


def _text2img(args) -> int:
    from ldm_lab.data.prepare_files import prepare_text2img

    print(prepare_text2img(args.source, args.out, overwrite=args.overwrite, skip_invalid=args.skip_invalid))
    return 0


def _inpainting(args) -> int:
    from ldm_lab.data.prepare_inpainting import prepare_inpainting

    stats = prepare_inpainting(
        args.source,
        args.out,
        split=args.split,
        image_column=args.image_column,
        mask_column=args.mask_column,
        masked_image_column=args.masked_image_column,
        text_column=args.text_column,
        seed=args.seed,
        hole_range=tuple(args.hole_range),
        max_samples=args.max_samples,
        overwrite=args.overwrite,
        skip_invalid=args.skip_invalid,
        progress=True,
    )
    hole = stats["hole_ratio"]
    print(
        f"{args.out}: {stats['total_samples']} samples, hole ratio {hole['min']:.3f}-{hole['max']:.3f} "
        f"(mean {hole['mean']:.3f}), {len(stats['skipped'])} skipped"
    )
    return 0


def register(subparsers) -> None:
    """Add the `data` and `prepare` command groups to the `ldm-lab` parser."""
    from ldm_lab.data.check import check_dataset
    from ldm_lab.data.demo import prepare_demo
    from ldm_lab.data.prepare_files import prepare_superres, prepare_text2img
    from ldm_lab.data.prepare_inpainting import prepare_inpainting

    data_parser = subparsers.add_parser("data", help="inspect datasets")
    data_parser.set_defaults(func=lambda args: data_parser.print_help() or 2)
    data = data_parser.add_subparsers(dest="data_command", metavar="COMMAND")
    check = _parser(
        data, "check", check_dataset, "validate a dataset folder and print a summary", EXAMPLES["check"]
    )
    check.add_argument("path", help="dataset folder (inpainting, super-resolution, text2img or HR images)")
    check.add_argument(
        "--scales", type=int, nargs="+", choices=(2, 4), help="SR scales to check (default: all present)"
    )
    check.add_argument(
        "--skip-invalid", action="store_true", help="list bad files as skipped instead of failing"
    )
    check.add_argument(
        "--crop-to-multiple", action="store_true", help="SR: accept HR that modcrops to LR x scale"
    )
    check.add_argument(
        "--caption-policy",
        default=_default(check_dataset, "caption_policy"),
        choices=("first", "all", "random"),
        help="text2img caption policy (default: %(default)s)",
    )
    check.set_defaults(func=_check)

    prepare = subparsers.add_parser("prepare", help="build datasets in the layouts the readers expect")
    prepare.set_defaults(func=lambda args: prepare.print_help() or 2)
    groups = prepare.add_subparsers(dest="prepare_command", metavar="COMMAND")
    demo = _parser(
        groups, "demo", prepare_demo, "small real-photo datasets in all three layouts", EXAMPLES["demo"]
    )
    demo.add_argument(
        "--out", default=str(_default(prepare_demo, "out")), help="output folder (default: %(default)s)"
    )
    demo.add_argument("--overwrite", action="store_true", help="rebuild existing demo folders")
    demo.set_defaults(func=_demo)

    for name, func, out, handler in (
        ("superres", prepare_superres, "data/super-resolution_dataset", _superres),
        ("text2img", prepare_text2img, "data/text2img_dataset", _text2img),
    ):
        sub = _parser(groups, name, func, f"lay out a {name} zip or folder", EXAMPLES[name])
        sub.add_argument("--source", required=True, help="zip archive or folder as downloaded")
        sub.add_argument("--out", default=out, help="output folder (default: %(default)s)")
        sub.add_argument("--overwrite", action="store_true", help="replace files whose content differs")
        sub.set_defaults(func=handler)
        if name == "superres":
            sub.add_argument(
                "--scales",
                type=int,
                nargs="+",
                choices=(2, 4),
                default=list(_default(func, "scales")),
                help="scales to lay out (default: %(default)s)",
            )
        else:
            sub.add_argument(
                "--skip-invalid", action="store_true", help="report bad caption rows instead of failing"
            )

    inpaint = _parser(
        groups,
        "inpainting",
        prepare_inpainting,
        "Hugging Face dataset -> inpainting folder",
        EXAMPLES["inpainting"],
    )
    inpaint.add_argument(
        "--source", required=True, help="hf:OWNER/NAME, save_to_disk folder, parquet or arrow"
    )
    inpaint.add_argument(
        "--out", default=str(_default(prepare_inpainting, "out")), help="default: %(default)s"
    )
    inpaint.add_argument(
        "--split", default=_default(prepare_inpainting, "split"), help="default: %(default)s"
    )
    for option, default in (
        ("image", "image"),
        ("mask", "mask if present, else generated masks"),
        ("masked-image", "masked_image if present"),
        ("text", "text if present"),
    ):
        required_default = _default(prepare_inpainting, "image_column") if option == "image" else None
        inpaint.add_argument(f"--{option}-column", default=required_default, help=f"default: {default}")
    inpaint.add_argument(
        "--seed",
        type=int,
        default=_default(prepare_inpainting, "seed"),
        help="mask generator seed (default: %(default)s)",
    )
    inpaint.add_argument(
        "--hole-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=list(_default(prepare_inpainting, "hole_range")),
        help="target hole ratio of generated masks (default: %(default)s)",
    )
    inpaint.add_argument("--max-samples", type=int, default=0, help="first N rows only (default: 0 = all)")
    inpaint.add_argument(
        "--overwrite", action="store_true", help="delete an earlier output with other settings"
    )
    inpaint.add_argument(
        "--skip-invalid", action="store_true", help="skip and record bad rows instead of failing"
    )
    inpaint.set_defaults(func=_inpainting)

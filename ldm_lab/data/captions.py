"""Caption files of text-to-image sets: `captions.txt` (CSV) and Flickr30k's original `results.csv`.

Accepted formats, recognised by the header row (compared case-insensitively, spaces stripped):
  * `image_name,caption` (README of the older scripts) or `image,caption` (Kaggle Flickr30k): CSV parsed
    by the `csv` module, so quoted captions may hold commas, quotes ("" escapes) and line breaks. A row
    with more than two fields (an unquoted comma in a caption) is an error naming the line: guessing
    where the caption ends would change captions silently.
  * `image_name| comment_number| comment` (Flickr30k `results.csv`): each line is split at its first
    two `|`; quotes are literal text in this format.
A file is read as UTF-8 (a BOM is allowed). Blank lines are ignored.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

CAPTION_FILES = ("captions.txt", "results.csv")  # looked up in this order
COMMA_HEADERS = (("image_name", "caption"), ("image", "caption"))
PIPE_HEADER = ("image_name", "comment_number", "comment")


@dataclass(frozen=True)
class CaptionRow:
    """One caption: the image file name as written in the file, the caption, its 1-based line number."""

    image: str
    caption: str
    line: int


def find_caption_file(root: Path) -> Path:
    """The first of `CAPTION_FILES` present in `root`, else FileNotFoundError naming both."""
    for name in CAPTION_FILES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no caption file in {root}: expected {' or '.join(CAPTION_FILES)}")


def _header(fields: list[str]) -> tuple[str, ...]:
    return tuple(field.strip().lower() for field in fields)


def read_captions(path: str | Path) -> tuple[list[CaptionRow], list[tuple[str, str]]]:
    """Parse a caption file. Returns (rows, problems); a problem is (\"FILE line N\", reason)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"caption file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    first_line = text.split("\n", 1)[0]
    if "|" in first_line:
        return _read_pipe(path, text)
    return _read_comma(path, text)


def _bad_header(path: Path, found) -> ValueError:
    expected = " or ".join(",".join(h) for h in COMMA_HEADERS) + " or " + "| ".join(PIPE_HEADER)
    return ValueError(f"{path}: unrecognised header {found!r}; expected {expected}")


def _read_comma(path: Path, text: str) -> tuple[list[CaptionRow], list[tuple[str, str]]]:
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise ValueError(f"{path} line 1: {err}") from None
    if header is None:
        raise ValueError(f"{path}: empty caption file")
    if _header(header) not in COMMA_HEADERS:
        raise _bad_header(path, ",".join(header))
    rows, problems = [], []
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            problems.append((f"{path.name} line {line}", f"CSV error: {err}"))
            continue
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != 2:
            problems.append(
                (
                    f"{path.name} line {line}",
                    f"expected 2 fields (image, caption), got {len(fields)}; "
                    "quote captions that contain commas",
                )
            )
        elif not fields[0].strip() or not fields[1].strip():
            problems.append((f"{path.name} line {line}", "empty image name or caption"))
        else:
            rows.append(CaptionRow(fields[0].strip(), fields[1].strip(), line))
    return rows, problems


def _read_pipe(path: Path, text: str) -> tuple[list[CaptionRow], list[tuple[str, str]]]:
    lines = text.splitlines()
    if _header(lines[0].split("|")) != PIPE_HEADER:
        raise _bad_header(path, lines[0])
    rows, problems = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("|", 2)
        if len(parts) != 3 or not parts[1].strip().isdigit():
            problems.append(
                (
                    f"{path.name} line {number}",
                    f"expected `image_name| comment_number| comment`, got {line[:80]!r}",
                )
            )
        elif not parts[0].strip() or not parts[2].strip():
            problems.append((f"{path.name} line {number}", "empty image name or caption"))
        else:
            rows.append(CaptionRow(parts[0].strip(), parts[2].strip(), number))
    return rows, problems

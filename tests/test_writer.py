"""ImageWriter: PNGs written on threads, byte-identical to inline writes; callbacks in order after the files
land; back-pressure; errors raised in the caller's thread with every queued file kept."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest

from ldm_lab.tasks import writer as writer_module
from ldm_lab.tasks.images import save_png
from ldm_lab.tasks.writer import ImageWriter


def images(n: int, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_files_are_those_of_save_png_and_callbacks_follow_their_files(tmp_path, monkeypatch, workers):
    def slow_save(root, rel, image):  # slow writes: a callback run too early would see missing files
        time.sleep(0.01)
        save_png(root, rel, image)

    monkeypatch.setattr(writer_module, "save_png", slow_save)
    pictures = images(6)
    for i, image in enumerate(pictures):
        save_png(tmp_path / "inline", f"img_{i}.png", image)  # the module's own function, unpatched
    seen = []
    with ImageWriter(tmp_path / "out", workers=workers) as w:
        for i, image in enumerate(pictures):
            w.save(f"sub/img_{i}.png", image)
            w.save(f"mask_{i}.png", image[..., 0] > 127)
            # when the callback runs, both files of image i (and of every earlier image) are on disk
            w.then(lambda i=i: seen.append((i, all((tmp_path / "out" / f"sub/img_{j}.png").is_file()
                                                   and (tmp_path / "out" / f"mask_{j}.png").is_file()
                                                   for j in range(i + 1)),
                                            threading.current_thread() is threading.main_thread())))
    assert seen == [(i, True, True) for i in range(6)]
    for i in range(6):
        assert digest(tmp_path / "out" / f"sub/img_{i}.png") == digest(tmp_path / "inline" / f"img_{i}.png")


def test_queue_is_bounded_by_max_pending(tmp_path, monkeypatch):
    def slow_save(root, rel, image):
        time.sleep(0.02)
        save_png(root, rel, image)

    monkeypatch.setattr(writer_module, "save_png", slow_save)
    queued = []
    with ImageWriter(tmp_path, workers=1, max_pending=3) as w:
        for i, image in enumerate(images(10, 8)):
            w.save(f"{i}.png", image)
            queued.append(w._files)
    assert max(queued) == 3 and len(list(tmp_path.glob("*.png"))) == 10


def test_a_failed_write_is_raised_here_and_the_other_files_land(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    done = []
    w = ImageWriter(tmp_path, workers=2)
    pictures = images(4, 8)
    w.save("a.png", pictures[0])
    w.then(lambda: done.append("a"))
    with pytest.raises(FileExistsError, match="blocker"):  # raised by the first call that meets the failed write
        w.save("blocker/b.png", pictures[1])  # its folder is a file: this write fails
        w.then(lambda: done.append("b"))
        w.save("c.png", pictures[2])
        w.close()
    w.abort()  # what the runner's `with` does on an error: queued writes finish, threads stop
    assert done == ["a"]  # b's callback never runs: its image is not finished
    assert (tmp_path / "a.png").is_file() and not (tmp_path / "blocker" / "b.png").exists()


def test_an_error_in_a_callback_stops_the_loop_but_queued_files_land(tmp_path):
    class Stop(Exception):
        pass

    def stop():
        raise Stop

    with pytest.raises(Stop):
        with ImageWriter(tmp_path, workers=2) as w:
            for i, image in enumerate(images(3, 8)):
                w.save(f"{i}.png", image)
            w.then(stop)
            w.save("after.png", images(1, 8)[0])  # not reached when `then` waits; reached otherwise
    assert sorted(p.name for p in tmp_path.glob("[0-9].png")) == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize("workers", [-1, 1.5, True, "2"])
def test_bad_worker_count_is_refused_by_name(tmp_path, workers):
    with pytest.raises(ValueError, match="`write_workers` must be an integer >= 0"):
        ImageWriter(tmp_path, workers=workers)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_function_is_computed_by_the_writer_and_its_result_saved(tmp_path, workers):
    image = images(1)[0]
    threads = []

    def compute():
        threads.append(threading.current_thread() is threading.main_thread())
        return 255 - image

    with ImageWriter(tmp_path / "out", workers=workers) as w:
        w.save("inverted.png", compute)
    save_png(tmp_path, "expected.png", 255 - image)
    assert threads == [workers == 0]  # inline without workers, on a worker thread otherwise
    assert digest(tmp_path / "out" / "inverted.png") == digest(tmp_path / "expected.png")

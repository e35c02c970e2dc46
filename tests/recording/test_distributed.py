"""Tests of seviz/recording/distributed.py and seviz/store/shards.py: recording under torchrun.

Fast tests record shards in this process (``record(shard=Shard(r, w))``, which is
what each rank runs) with the tiny user model, and combine them. Slow tests run
``torchrun`` itself (``python -m torch.distributed.run``, gloo on loopback) on
the shipped demo model and images, and kill one rank with SIGKILL mid-run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import h5py
import numpy as np
import pytest
from _images import write_class_folders, write_tiny_model
from _same_statistics import assert_same_statistics

from seviz.analysis import compute_statistics
from seviz.errors import RecordError, StoreError
from seviz.recording import record
from seviz.recording.distributed import Shard, _check_start, shard_from_environment
from seviz.store import combine_shards, open_store, shard_folder, shard_path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "cifar10_sample"


# ---------------------------------------------------------------- slices and the environment


@pytest.mark.parametrize("total, world", [(200, 2), (10, 3), (7, 4), (3, 5), (1_281_167, 64)])
def test_slices_are_contiguous_balanced_and_cover_the_list_once(total, world):
    bounds = [Shard(rank, world).bounds(total) for rank in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))  # contiguous, no overlap
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1  # no padding, no duplicates: sizes differ by at most one
    items = list(range(total)) if total < 1000 else []
    if items:
        assert sum((Shard(r, world).take(items) for r in range(world)), []) == items


def test_the_rank_comes_from_torchruns_environment():
    assert shard_from_environment({}) is None
    assert shard_from_environment({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
    shard = shard_from_environment({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert shard == Shard(5, 8, 1) and shard.label == "rank 5/8"
    with pytest.raises(RecordError, match="must be integers"):
        shard_from_environment({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(RecordError, match="RANK=2 is not below WORLD_SIZE=2"):
        shard_from_environment({"RANK": "2", "WORLD_SIZE": "2"})


# ---------------------------------------------------------------- shards recorded in this process


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    return str(write_tiny_model(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def uneven_data(tmp_path_factory):
    """10 images; the dog files have longer names, so the shards' path strings differ in length."""
    root = tmp_path_factory.mktemp("uneven")
    written = write_class_folders(root / "data", {"cat": 5, "dog": 5}, size=(32, 32), suffix=".png")
    for path in written["dog"]:
        path.rename(path.with_name(path.stem + "_with_a_much_longer_file_name.png"))
    return root / "data"


def record_tiny(spec: str, data: Path, out: Path, factory: str = "tiny", **options):
    options = {"weights": "random", "batch_size": 1, "workers": 0, "dtype": "float32", **options}
    return record(
        model=f"{spec}:{factory}", data=data, out=out, class_names=["cat", "dog"], device="cpu",
        progress=False, **options,
    )  # fmt: skip


def record_shards(spec: str, data: Path, out: Path, world: int, **options) -> None:
    """What each rank of a torchrun run does, one rank after another."""
    for rank in range(world):
        record_tiny(spec, data, shard_path(out, rank, world), shard=Shard(rank, world), **options)


def columns(path: Path) -> dict[str, np.ndarray]:
    with open_store(path) as store:
        out = {
            "path": store.paths,
            "label": store.labels,
            "class_name": store.class_names,
            "topk_index": store.topk_index,
            "topk_prob": store.topk_prob,
        }
        out.update({f"blocks/{name}": store.gates(name) for name in store.block_names})
        return out


@pytest.fixture(scope="module")
def combined(tiny_spec, uneven_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("combined")
    single = root / "single.h5"
    record_tiny(tiny_spec, uneven_data, single)
    out = root / "run" / "store.h5"
    record_shards(tiny_spec, uneven_data, out, world=3)
    combine_shards(out, 3)
    return single, out


def test_three_uneven_shards_combine_into_the_single_process_store(combined):
    single, out = combined
    want, got = columns(single), columns(out)
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)  # batch size 1: bit for bit
    with open_store(out) as store:
        assert store.complete and len(store) == 10
        assert store.attrs["world_size"] == 3
        assert json.loads(store.attrs["shards"]) == [
            f"store.shards/shard-0000{r}-of-00003.h5" for r in range(3)
        ]
        assert json.loads(store.attrs["run_config"])["images"] == 10
    for rank in range(3):
        with open_store(shard_path(out, rank, 3)) as shard:
            assert (shard.attrs["rank"], shard.attrs["world_size"]) == (rank, 3)
            assert len(shard) == (3, 3, 4)[rank]


def test_plain_h5py_reads_the_virtual_datasets(combined):
    single, out = combined
    with h5py.File(out, "r") as f, h5py.File(single, "r") as g:
        for key in ("samples/path", "samples/label", "blocks/SE_5_1", "blocks/SE_2_1"):
            assert f[key].is_virtual, key
            np.testing.assert_array_equal(f[key][()], g[key][()], err_msg=key)
        # The shards sized their path strings for their own slices; the virtual dataset takes the widest.
        widths = {h5py.File(shard_path(out, r, 3))["samples/path"].dtype.itemsize for r in range(3)}
        assert len(widths) == 2 and f["samples/path"].dtype.itemsize == max(widths)
        assert not f["progress"].is_virtual and f["progress"][()].tolist() == [10, 10]
        assert {Path(s.file_name).as_posix() for s in f["blocks/SE_2_1"].virtual_sources()} == {
            f"store.shards/shard-0000{r}-of-00003.h5" for r in range(3)
        }


def test_two_readers_of_one_block_at_once_both_read_the_shards(combined):
    """Two open handles of one virtual dataset (parts analysed side by side) read the same rows."""
    single, out = combined
    want = columns(single)["blocks/SE_3_1"]
    with open_store(out) as store:
        first = store.iter_chunks("SE_3_1", rows=4)
        second = store.iter_chunks("SE_3_1", rows=4, start=4)
        rows_a, a = next(first)
        rows_b, b = next(second)  # opened while the first handle is open
        rows_c, c = next(first)
    np.testing.assert_array_equal(a, want[rows_a])
    np.testing.assert_array_equal(b, want[rows_b])
    np.testing.assert_array_equal(c, want[rows_c])
    assert rows_b == slice(4, 8) and rows_c == slice(4, 8)


def test_the_folder_moves_and_a_missing_shard_is_refused(combined, tmp_path, monkeypatch):
    single, out = combined
    moved = tmp_path / "elsewhere"
    shutil.copytree(out.parent, moved)
    monkeypatch.chdir(tmp_path)  # neither the old folder nor the new one
    want = columns(single)
    got = columns(moved / "store.h5")
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    (moved / "store.shards" / "shard-00001-of-00003.h5").unlink()
    with pytest.raises(StoreError, match=r"shard-00001-of-00003.h5.*missing.*store.shards/ folder together"):
        open_store(moved / "store.h5")


def test_statistics_of_the_combined_store_equal_the_single_process_ones(combined):
    single, out = combined
    one = compute_statistics(single)
    assert json.dumps(compute_statistics(out).to_dict()["blocks"]) == json.dumps(one.to_dict()["blocks"])
    assert_same_statistics(compute_statistics(out, jobs=3), one)  # 3 parts, merged


def test_more_ranks_than_images_leaves_empty_shards(tiny_spec, tmp_path):
    data = tmp_path / "data"
    write_class_folders(data, {"cat": 2, "dog": 1}, size=(32, 32), suffix=".png")
    out = tmp_path / "store.h5"
    record_shards(tiny_spec, data, out, world=5)
    combine_shards(out, 5)
    record_tiny(tiny_spec, data, tmp_path / "single.h5")
    with open_store(out) as store:
        assert len(store) == 3
    for rank in range(5):
        with open_store(shard_path(out, rank, 5)) as shard:
            assert len(shard) == (0, 1, 0, 1, 1)[rank]
    want, got = columns(tmp_path / "single.h5"), columns(out)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_combining_refuses_a_missing_unfinished_or_foreign_shard(tiny_spec, uneven_data, tmp_path):
    out = tmp_path / "store.h5"
    record_tiny(tiny_spec, uneven_data, shard_path(out, 0, 2), shard=Shard(0, 2))
    with pytest.raises(StoreError, match=r"shard-00001-of-00002.h5' is missing.*--resume"):
        combine_shards(out, 2)
    # A rank that ran other options (here: fewer images per class) is not a slice of this recording.
    record_tiny(tiny_spec, uneven_data, shard_path(out, 1, 2), shard=Shard(1, 2), images_per_class=4)
    with pytest.raises(StoreError, match="other options"):
        combine_shards(out, 2)
    assert not out.exists()


def test_an_interrupted_shard_resumes_and_refuses_other_options(
    tiny_spec, uneven_data, combined, tmp_path, monkeypatch
):
    """What rank 1 does after it was stopped mid-slice: --resume with the same options, not others."""
    single, _ = combined
    out = tmp_path / "store.h5"
    stopping = "interrupted"  # the tiny network, stopped at forward pass $TINY_STOP_AT
    record_tiny(tiny_spec, uneven_data, shard_path(out, 0, 2), stopping, shard=Shard(0, 2))
    monkeypatch.setenv("TINY_STOP_AT", "4")  # pass 1 is the probe: 2 of its 5 images are committed
    with pytest.raises(KeyboardInterrupt):
        record_tiny(tiny_spec, uneven_data, shard_path(out, 1, 2), stopping, shard=Shard(1, 2))
    monkeypatch.delenv("TINY_STOP_AT")
    with open_store(shard_path(out, 1, 2), warn_incomplete=False) as shard:
        assert (len(shard), shard.complete) == (2, False)
    with pytest.raises(StoreError, match="cannot resume.*images_per_class"):
        record_tiny(
            tiny_spec, uneven_data, shard_path(out, 1, 2), stopping, shard=Shard(1, 2), resume=True,
            images_per_class=4,
        )  # fmt: skip
    with pytest.raises(StoreError, match="cannot resume.*world_size"):  # a slice of another world size
        record_tiny(tiny_spec, uneven_data, shard_path(out, 1, 2), stopping, shard=Shard(1, 3), resume=True)
    summary = record_tiny(
        tiny_spec, uneven_data, shard_path(out, 1, 2), stopping, shard=Shard(1, 2), resume=True
    )
    assert (summary.samples, summary.complete) == (5, True)
    combine_shards(out, 2)
    want, got = columns(single), columns(out)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_a_run_is_checked_against_the_shards_there_before_it_starts(tmp_path):
    out = tmp_path / "store.h5"
    folder = shard_folder(out)
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="cannot --resume.*do not exist"):
        _check_start(out, Shard(0, 2), resume=True, overwrite=False)
    (folder / "shard-00000-of-00002.h5").write_bytes(b"")
    (folder / "shard-00001-of-00002.h5").write_bytes(b"")
    # Another world size: each slice would differ, so it is refused with the way out.
    with pytest.raises(StoreError, match=r"with 3 ranks.*2 shard\(s\) of a 2-rank run.*WORLD_SIZE=2"):
        _check_start(out, Shard(1, 3), resume=True, overwrite=False)
    with pytest.raises(FileExistsError, match="unfinished recording.*--resume"):
        _check_start(out, Shard(0, 2), resume=False, overwrite=False)
    _check_start(out, Shard(1, 2), resume=True, overwrite=False)  # the same world size resumes
    out.write_bytes(b"")
    with pytest.raises(FileExistsError, match="already exists.*--overwrite"):
        _check_start(out, Shard(0, 2), resume=False, overwrite=False)
    # --overwrite with 3 ranks: rank 0 removes the old store and the 2-rank shards before anyone writes.
    _check_start(out, Shard(1, 3), resume=False, overwrite=True)
    assert out.exists()
    _check_start(out, Shard(0, 3), resume=False, overwrite=True)
    assert not out.exists() and not list(folder.iterdir())


def test_one_process_cannot_resume_what_several_ranks_began(tiny_spec, uneven_data, tmp_path):
    out = tmp_path / "store.h5"
    record_tiny(tiny_spec, uneven_data, shard_path(out, 0, 2), shard=Shard(0, 2))
    with pytest.raises(StoreError, match="in one process.*torchrun with WORLD_SIZE=2"):
        record_tiny(tiny_spec, uneven_data, out, resume=True)


# ---------------------------------------------------------------- torchrun itself (slow)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_command(ranks: int, *seviz_args: str, rendezvous: str = "static") -> list[str]:
    port = str(free_port())
    launch = (
        ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"]
        if rendezvous == "c10d"
        else ["--master-addr", "127.0.0.1", "--master-port", port]
    )
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(ranks),
        *launch, "-m", "seviz", "record", *seviz_args,
    ]  # fmt: skip


def torchrun_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


DEMO_ARGS = (
    "--model", "se_resnet50_cifar10", "--data", str(SAMPLE), "--images-per-class", "20",
    "--batch-size", "20", "--device", "cpu",
)  # fmt: skip


def analyze_output(path: Path) -> str:
    from seviz.cli import main

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["analyze", str(path)]) == 0
    return buffer.getvalue().replace(str(path), "STORE")


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """200 shipped images through the shipped demo model: torchrun on 2 ranks, and one process."""
    root = tmp_path_factory.mktemp("torchrun")
    out = root / "run" / "store.h5"
    out.parent.mkdir()
    done = subprocess.run(
        torchrun_command(2, *DEMO_ARGS, "--out", str(out), "--no-progress"),
        env=torchrun_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    single = root / "single.h5"
    record(
        model="se_resnet50_cifar10", data=SAMPLE, out=single, images_per_class=20, batch_size=20,
        device="cpu", progress=False,
    )  # fmt: skip
    return out, single, done.stdout


@pytest.mark.slow
def test_torchrun_two_ranks_record_the_single_process_store(demo_runs):
    out, single, stdout = demo_runs
    want, got = columns(single), columns(out)
    for key in ("path", "label", "class_name", "topk_index"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)  # samples, labels, order
    assert len(got["path"]) == 200 and len(set(got["path"].tolist())) == 200
    for key in want:
        if key.startswith("blocks/"):
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-5, err_msg=key)
    # The summary reports every rank.
    assert "samples:  200" in stdout and "(all ranks)" in stdout
    assert "rank 0:   100 samples" in stdout and "rank 1:   100 samples" in stdout
    with open_store(out) as store:
        ranks = json.loads(store.attrs["ranks"])
        assert [r["samples"] for r in ranks] == [100, 100]
        assert store.attrs["world_size"] == 2


@pytest.mark.slow
def test_analyze_and_h5py_read_the_torchrun_store_as_the_single_process_one(demo_runs, tmp_path):
    out, single, _ = demo_runs
    assert analyze_output(out) == analyze_output(single)
    with h5py.File(out, "r") as f, h5py.File(single, "r") as g:
        assert sorted(f["blocks"]) == sorted(g["blocks"])
        assert all(f["blocks"][name].is_virtual for name in f["blocks"])
        np.testing.assert_array_equal(f["samples/label"][()], g["samples/label"][()])
    # One pass over the combined store gives the single-process numbers; parts merged, the same
    # up to float rounding (exactly for counts, extremes, histograms, quantiles).
    one = compute_statistics(single)
    assert json.dumps(compute_statistics(out).to_dict()["blocks"]) == json.dumps(one.to_dict()["blocks"])
    for jobs in (2, 3):
        assert_same_statistics(compute_statistics(out, jobs=jobs), one)


@pytest.mark.slow
def test_the_app_reads_the_torchrun_store_after_the_folder_moved(demo_runs, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from seviz.app.launcher import app_script

    out, _, _ = demo_runs
    moved = tmp_path / "moved"
    shutil.copytree(out.parent, moved)
    monkeypatch.setattr(sys, "argv", [str(app_script()), "--root", str(moved), str(moved / "store.h5")])
    at = AppTest.from_file(str(app_script()), default_timeout=120)
    at.query_params["page"] = "Overview"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Samples"], metrics["SE blocks"], metrics["Complete"]) == ("200", "16", "yes")
    at.sidebar.radio(key="page").set_value("Distributions").run()
    assert not at.exception and not at.error


# -------------------------------------------------------- kill -9 one rank, then --resume


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: no psutil here)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rank_pid(launcher: int, rank: int) -> int | None:
    for pid in descendants(launcher):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RUN_ID" in b" ".join(environ):
            return pid
    return None


def committed(path: Path) -> int:
    try:
        with open_store(path, warn_incomplete=False) as store:
            return len(store)
    except (FileNotFoundError, StoreError, OSError):
        return 0


PACED_IMAGES = 40  # per class; each rank records 40 images in batches of 2, >= 0.1 s each


@pytest.mark.slow
def test_kill_9_one_rank_then_resume_gives_the_uninterrupted_store(tmp_path, monkeypatch):
    spec = write_tiny_model(tmp_path)
    data = tmp_path / "data"
    write_class_folders(data, {"cat": PACED_IMAGES, "dog": PACED_IMAGES}, size=(32, 32), suffix=".png")
    single = tmp_path / "single.h5"
    monkeypatch.setenv("TINY_SLEEP", "0")
    record(
        model=f"{spec}:paced", weights="random", data=data, out=single, class_names=["cat", "dog"],
        batch_size=2, device="cpu", dtype="float32", progress=False,
    )  # fmt: skip
    out = tmp_path / "run" / "store.h5"
    args = (
        "--model", f"{spec}:paced", "--weights", "random", "--class-names", "cat,dog", "--data", str(data),
        "--batch-size", "2", "--device", "cpu", "--dtype", "float32", "--no-progress", "--out", str(out),
    )  # fmt: skip
    log = tmp_path / "torchrun.log"
    with open(log, "wb") as handle:
        launcher = subprocess.Popen(
            torchrun_command(2, *args, rendezvous="c10d"),
            env=torchrun_env(TINY_SLEEP="0.1"),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        victim = shard_path(out, 1, 2)
        deadline = time.monotonic() + 300
        while committed(victim) < 6:
            assert launcher.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        pid = rank_pid(launcher.pid, 1)
        assert pid is not None, log.read_text()
        os.kill(pid, signal.SIGKILL)
        launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert not out.exists()  # rank 0 never combined
    kept = [committed(shard_path(out, rank, 2)) for rank in range(2)]
    assert 6 <= kept[1] < PACED_IMAGES, (kept, log.read_text())
    with open_store(shard_path(out, 1, 2), warn_incomplete=False) as shard:
        assert not shard.complete

    # The same command with --resume (another port: the old rendezvous is gone).
    done = subprocess.run(
        torchrun_command(2, *args, "--resume"),
        env=torchrun_env(TINY_SLEEP="0"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    want, got = columns(single), columns(out)
    assert len(got["path"]) == 2 * PACED_IMAGES and len(set(got["path"].tolist())) == 2 * PACED_IMAGES
    for key in want:
        if key.startswith("blocks/") or key == "topk_prob":
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)

    # A resume with another world size is refused, naming the one to use.
    out.unlink()
    refused = subprocess.run(
        torchrun_command(3, *args, "--resume"),
        env=torchrun_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode != 0
    assert "WORLD_SIZE=2" in refused.stdout + refused.stderr

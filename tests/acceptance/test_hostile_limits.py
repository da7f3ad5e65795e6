"""The hostile-input corpus, limits: inputs whose size alone would cost minutes, disk or memory.

Each limit is checked before the work it bounds (before a grid is expanded, a set written, a file
read), and a case past it ends refused in one line (``dcbench: error: ...``) naming the count or
size, the limit and the fix. Large files are sparse (``truncate``): nothing here writes gigabytes.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cli_refusals import assert_refused, cli

pytestmark = pytest.mark.acceptance


class TookTooLong(BaseException):
    """Raised by the alarm (a BaseException: a cell's ``except Exception`` must not swallow it)."""


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail the block when it runs longer than ``seconds`` (a run that would go on for hours ends):
    the alarm repeats, since a cell records even a BaseException and the grid goes on."""
    armed = [True]

    def expire(signum: int, frame: Any) -> None:
        if armed[0]:
            raise TookTooLong(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- 1. a grid too large to plan -----------------------------------------------------------------


def test_a_spec_of_100000_cells_is_refused_at_once(tmp_path: Path, capsys) -> None:
    """Seen: a spec of 1 method x 200 IPCs x 500 seeds printed nothing for a minute while its
    100,000 cells were checked and expanded (and would then have run them all)."""
    from dcbench.testing import write_fashion_mnist_idx

    write_fashion_mnist_idx(tmp_path / "data", per_class=2, test_per_class=1)
    spec = tmp_path / "huge.toml"
    ipcs, seeds = list(range(1, 201)), list(range(500))
    spec.write_text(f'preset = "smoke"\nmethods = ["random"]\nipcs = {ipcs}\nseeds = {seeds}\n')
    args = ["run", spec, "--out", tmp_path / "out", "--data-root", tmp_path / "data", "--device", "cpu"]
    start = time.perf_counter()
    with within(20):
        code, err = cli(capsys, *args, "--quiet", "--reference", "none")
    assert time.perf_counter() - start < 3
    assert_refused(code, err, "100,000 cells", "1 methods x 1 datasets x 200 IPCs x 500 seeds", "split it")
    assert not (tmp_path / "out").exists()
    # the default methods (known once the plugins are) are counted too: 100 x 150 = 15,000 per method
    spec.write_text(f'preset = "smoke"\nipcs = {list(range(1, 101))}\nseeds = {list(range(150))}\n')
    with within(20):
        code, err = cli(capsys, *args, "--quiet", "--reference", "none")
    assert_refused(code, err, "x 1 datasets x 100 IPCs x 150 seeds", "split it")


# --- 2. an import that writes thousands of sets ----------------------------------------------------


def test_an_import_of_2000_experiments_is_refused_before_writing(tmp_path: Path, capsys) -> None:
    """Seen: a 37 KB res_*.pt whose 'data' repeats one stored [images, labels] pair 2,000 times
    (torch.save stores a shared tensor once) became 2,000 set directories."""
    import torch

    images, labels = torch.zeros(10, 1, 28, 28), torch.arange(10)
    file = tmp_path / "res_DM_FashionMNIST_ConvNet_1ipc.pt"
    torch.save({"data": [[images, labels]] * 2000, "accs_all_exps": {}}, file)
    assert file.stat().st_size < 100_000
    out = tmp_path / "imported"
    with within(30):
        code, err = cli(capsys, "import", file, "--format", "dc-repo", "--dataset", "fashion-mnist", "-o", out)
    assert_refused(code, err, "2,000 experiments", "100 sets", "split")
    assert not out.exists()


# --- 3. files read whole, whatever their size ------------------------------------------------------


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of ``size`` bytes that takes no disk (``head``, then a hole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def condense_args(dataset: Any, root: Path, out: Path) -> list[Any]:
    return ["condense", "--method", "random", "--dataset", dataset, "--ipc", "1", "--preset", "smoke",
            "--data-root", root, "--device", "cpu", "-o", out]  # fmt: skip


def test_an_oversized_idx_file_or_gzip_bomb_is_refused_before_it_is_read(tmp_path: Path, capsys) -> None:
    """Seen: an 8 GiB train-images-idx3-ubyte with a valid header was read whole into memory
    before its size was compared with its header; a .gz of a few hundred KB expands without bound."""
    import gzip
    import shutil
    import struct

    from dcbench.testing import write_fashion_mnist_idx

    limit = 256 * 2**20
    raw = write_fashion_mnist_idx(tmp_path / "plain", per_class=2, test_per_class=1)
    sparse(raw / "train-images-idx3-ubyte", limit + 1, struct.pack(">4i", 0x803, 20, 28, 28))
    code, err = cli(capsys, *condense_args("fashion-mnist", tmp_path / "plain", tmp_path / "out"))
    assert_refused(code, err, "train-images-idx3-ubyte is 268,435,457 bytes", "more than the 256 MiB", "re-copy")

    flat = tmp_path / "gz"  # a flat directory of .gz files, the images one a bomb: 1 MiB members, 257 of them
    flat.mkdir()
    for f in raw.iterdir():
        if f.name != "train-images-idx3-ubyte":
            with open(f, "rb") as src, gzip.open(flat / f"{f.name}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
    member = gzip.compress(struct.pack(">4i", 0x803, 20, 28, 28).ljust(2**20, b"\0"))
    (flat / "train-images-idx3-ubyte.gz").write_bytes(member * 257)
    assert (flat / "train-images-idx3-ubyte.gz").stat().st_size < 300_000
    code, err = cli(capsys, *condense_args("fashion-mnist", flat, tmp_path / "out"))
    assert_refused(code, err, "train-images-idx3-ubyte.gz decompresses to more than 256 MiB", "re-copy it")
    sparse(flat / "train-images-idx3-ubyte.gz", limit + 2**20, member)  # and a .gz that is itself too big
    code, err = cli(capsys, *condense_args("fashion-mnist", flat, tmp_path / "out"))
    assert_refused(code, err, "train-images-idx3-ubyte.gz is 269,484,032 bytes", "compressed fashion-mnist file")
    assert not (tmp_path / "out").exists()


def test_an_oversized_cifar_batch_is_refused_before_it_is_unpickled(tmp_path: Path, capsys) -> None:
    """Seen: a CIFAR-10 batches.meta of gigabytes was handed to the unpickler, which reads what
    the stream asks for (a 1 GiB bytes object is one opcode)."""
    sparse(tmp_path / "cifar-10-batches-py" / "batches.meta", 2**30 + 1, b"\x80\x02")
    code, err = cli(capsys, *condense_args("cifar10", tmp_path, tmp_path / "out"))
    assert_refused(code, err, "batches.meta is 1,073,741,825 bytes", "more than the 1 GiB", "official archive")


def test_oversized_tensor_files_are_refused_before_they_are_loaded(tmp_path: Path, capsys) -> None:
    """Seen: a synthetic.pt, an imported res_*.pt and a dataset .pt of 8 GiB went to torch.load as
    they were (a zip archive's members are read whole)."""
    size, head = 4 * 2**30 + 1, b"PK\x03\x04"
    sparse(tmp_path / "set" / "synthetic.pt", size, head)
    code, err = cli(capsys, "evaluate", tmp_path / "set", "--preset", "smoke", "--data-root", tmp_path)
    assert_refused(code, err, "synthetic.pt is 4,294,967,297 bytes", "more than the 4 GiB")
    release = sparse(tmp_path / "res_DM_FashionMNIST_ConvNet_1ipc.pt", size, head)
    code, err = cli(
        capsys, "import", release, "--format", "dc-repo", "--dataset", "fashion-mnist", "-o", tmp_path / "i"
    )
    assert_refused(code, err, "res_DM_FashionMNIST_ConvNet_1ipc.pt is 4,294,967,297 bytes", "DC/DSA/DM scripts")
    for name in ("data.pt", "data.npz"):
        dataset = sparse(tmp_path / name, size, head)
        code, err = cli(capsys, *condense_args(dataset, tmp_path, tmp_path / "out"))
        assert_refused(code, err, f"{name} is 4,294,967,297 bytes", "a dataset file", "at most 4 GiB")
    assert not (tmp_path / "i").exists() and not (tmp_path / "out").exists()


def test_an_oversized_spec_or_manifest_is_refused_before_it_is_read(tmp_path: Path, capsys) -> None:
    """Seen: a spec.toml and a set's manifest.json of gigabytes were read whole as text before
    they were parsed; they are a few KB."""
    import torch

    from dcbench.method.synthetic import SyntheticSet

    spec = sparse(tmp_path / "spec.toml", 16 * 2**20 + 1, b'name = "big"\n')
    code, err = cli(capsys, "run", spec, "--out", tmp_path / "out", "--quiet", "--reference", "none")
    assert_refused(code, err, "spec.toml is 16,777,217 bytes", "more than the 16 MiB a spec may hold", "few KB")
    SyntheticSet(torch.zeros(10, 1, 28, 28), torch.arange(10)).save(tmp_path / "set")
    sparse(tmp_path / "set" / "manifest.json", 2**30, b"{")
    code, err = cli(capsys, "evaluate", tmp_path / "set", "--preset", "smoke", "--data-root", tmp_path)
    assert_refused(code, err, "manifest.json is 1 GiB", "more than the 16 MiB a manifest may hold", "restore it")
    assert not (tmp_path / "out").exists()


# --- 4. a conformance check that could fail only on a GPU ------------------------------------------


def test_the_device_check_fails_on_a_cpu_for_a_network_run_elsewhere() -> None:
    """Seen: the conformance kit's device check compared where networks were built (always the
    context's device) and that the set came back on the CPU (SyntheticSet moves it there), so it
    could fail only on a GPU; a method that moved its network elsewhere passed on a CPU. The meta
    device stands for the other device here (tests/method/test_conformance.py has the defect too)."""
    from dataclasses import dataclass

    import torch

    from dcbench.method.contract import Method, class_major_labels, init_synthetic_images
    from dcbench.method.seeding import make_generator
    from dcbench.method.synthetic import SyntheticSet
    from dcbench.testing import ConformanceSuite

    @dataclass
    class Config:
        pass

    class OffDevice(Method):
        name, version, description, config_class = "offdevice", "1.0.0", "real images; a network on meta", Config

        def condense(self, real, ipc, config, seed, ctx):  # type: ignore[no-untyped-def]
            images = init_synthetic_images(real, ipc, "real", make_generator(seed, "init"))
            net = ctx.build_network("ConvNet", real, make_generator(seed, "net")).to("meta")
            net(torch.zeros(1, *images.shape[1:], device="meta"))
            ctx.metrics["iterations"] = 0
            return SyntheticSet(images, class_major_labels(real.num_classes, ipc))

    suite = ConformanceSuite(OffDevice(), devices=["cpu"])
    with pytest.raises(AssertionError, match=r"'device': .* ran on meta, not on the context's cpu; keep every"):
        suite.run("device")
    suite.run("shapes")  # the method itself works: only where its network ran is wrong

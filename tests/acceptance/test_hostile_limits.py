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

from dcbench.cli import main

pytestmark = pytest.mark.acceptance


def cli(capsys: pytest.CaptureFixture, *args: Any) -> tuple[int, list[str]]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def assert_refused(code: int, err: list[str], *fragments: str) -> None:
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("dcbench: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]


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

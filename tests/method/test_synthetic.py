from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcbench.host.errors import DcbenchError
from dcbench.method.contract import class_major_labels
from dcbench.method.synthetic import SyntheticSet, content_hash, load_synthetic
from dcbench.report.image_grids import write_set_grid


def make_set() -> SyntheticSet:
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    return SyntheticSet(images, class_major_labels(2, 1), {"method": "toy", "dataset": "toy"})


def test_round_trip_with_manifest_and_hash(tmp_path: Path) -> None:
    s = make_set()
    s.save(tmp_path)
    assert write_set_grid(tmp_path, "toy") == tmp_path / "grid.png"
    loaded = load_synthetic(tmp_path)
    assert torch.equal(loaded.images, s.images) and torch.equal(loaded.labels, s.labels)
    assert loaded.manifest["content_hash"] == content_hash(s.images, s.labels)
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    width, height = Image.open(tmp_path / "grid.png").size  # the report's panel, not a 30-pixel strip
    assert width >= 480 and height >= 300


def test_tampered_content_is_detected(tmp_path: Path) -> None:
    make_set().save(tmp_path)
    torch.save({"images": torch.zeros(2, 1, 4, 4), "labels": torch.tensor([0, 1])}, tmp_path / "synthetic.pt")
    with pytest.raises(DcbenchError, match="does not match the hash"):
        load_synthetic(tmp_path)


class Evil:
    def __reduce__(self):
        # exec, not print: Ray replaces builtins.print in a process that started it (an earlier test)
        return (exec, ("pwned = True",))


@pytest.mark.parametrize(
    "payload,match",
    [
        ({"images": Evil(), "labels": torch.tensor([0])}, "refused to load: it needs the Python object exec"),
        ([torch.zeros(1)], "expected a dict with tensors"),
        ({"images": torch.zeros(2, 4, 4), "labels": torch.tensor([0, 1])}, r"must be \(N, C, H, W\)"),
        ({"images": torch.zeros(2, 1, 4, 4), "labels": torch.tensor([0])}, "labels must be"),
        ({"images": torch.full((1, 1, 4, 4), float("nan")), "labels": torch.tensor([0])}, "NaN"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path: Path, payload, match: str) -> None:
    torch.save(payload, tmp_path / "synthetic.pt")
    with pytest.raises(DcbenchError, match=match) as info:
        load_synthetic(tmp_path)
    assert "\n" not in str(info.value)


def test_not_a_tensor_file_and_bad_manifest(tmp_path: Path) -> None:
    (tmp_path / "synthetic.pt").write_text("hello")
    with pytest.raises(DcbenchError, match="not a dcbench synthetic set"):
        load_synthetic(tmp_path)
    make_set().save(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(DcbenchError, match="not valid JSON"):
        load_synthetic(tmp_path)

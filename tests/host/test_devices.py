"""Devices: MPS on request, CUDA indices checked against the visible GPUs, the hardware's name."""

from __future__ import annotations

import pytest
import torch

from dcbench.cli import main
from dcbench.host.devices import device_name, resolve_device
from dcbench.host.errors import DcbenchError


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")


def test_cuda_index_is_checked_against_the_visible_gpus(two_gpus: None) -> None:
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(DcbenchError) as info:
        resolve_device("cuda:2")
    assert str(info.value) == (
        "--device cuda:2 asked for, but 2 CUDA GPU(s) are visible "
        "(CUDA_VISIBLE_DEVICES=3,5); use one of cuda:0 to cuda:1"
    )


def test_no_gpu_and_unknown_devices_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DcbenchError, match="no CUDA GPU is visible"):
        resolve_device("cuda:0")
    for bad in ("tpu", "cuda:x", "cuda:-1", "gpu"):
        with pytest.raises(DcbenchError, match="unknown device"):
            resolve_device(bad)
    assert resolve_device("auto") == torch.device("cpu")


def test_mps_where_available_and_a_clear_line_where_not(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")  # MPS only on request
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: False)
    assert (
        main(
            [
                "condense",
                "--method",
                "random",
                "--dataset",
                "fashion-mnist",
                "--ipc",
                "1",
                "--device",
                "mps",
                "-o",
                "never",
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        "dcbench: error: --device mps asked for, but this PyTorch build has no MPS support; use --device cpu or auto"
    )
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    with pytest.raises(DcbenchError, match="no Apple GPU is usable here"):
        resolve_device("mps")


def test_device_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert device_name(torch.device("cpu")).strip()
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert device_name(torch.device("cuda:0")) == "NVIDIA H100 80GB HBM3"
    assert "MPS" in device_name(torch.device("mps"))

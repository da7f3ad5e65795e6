"""The conformance kit: the promises every method plugin keeps, checked on tiny random data.

In a plugin's tests, either in one call (one AssertionError listing every broken promise)::

    from dcbench.testing import check_method

    def test_conformance() -> None:
        check_method(MyMethod())

or as one pytest case per check, so a report names the broken promise::

    import pytest
    from dcbench.testing import conformance_cases

    @pytest.mark.parametrize("suite, check", conformance_cases([MyMethod()]))
    def test_conformance(suite, check) -> None:
        suite.run(check)

The checks (see :data:`CHECKS`) run the ``smoke`` preset through :func:`dcbench.method.condense.condense`
on tiny random datasets (3 classes of 1x28x28 images at IPC 2, 12 classes of 3x32x32 images at IPC
1), single-threaded so that a busy CPU does not distort the smoke time. A method
whose output does not depend on the seed declares ``seed_independent = True`` on its class (or the
caller passes ``seed_independent=True``); the seed-sensitivity check is then skipped. A method
that declares ``resumable = True`` is interrupted right after its first checkpoint and resumed
from it (the state going through ``torch.save`` and ``torch.load(weights_only=True)`` as in the
host); the result must be bitwise the uninterrupted one. For other methods the check is skipped.

The tiny datasets come from :mod:`dcbench.testing.data`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dcbench.data.real import RealDataset
from dcbench.host.errors import first_line
from dcbench.method.checkpoint import plain_state
from dcbench.method.condense import condense
from dcbench.method.contract import (
    AUGMENTATIONS,
    METHOD_NAME,
    PRESETS,
    CondenseContext,
    Method,
    NativeEvaluation,
    SavedState,
    class_major_labels,
    config_to_dict,
)
from dcbench.nn.networks import Architecture
from dcbench.testing.data import tiny_dataset

#: every check, in the order :func:`check_method` runs them
CHECKS = (
    "metadata",
    "config_roundtrip",
    "shapes",
    "labels",
    "determinism",
    "seed_sensitivity",
    "global_rng",
    "device",
    "real_data_untouched",
    "metrics",
    "resume",
    "smoke_time",
)


# --- one recorded condensation -------------------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    """One condensation the suite runs: a tiny dataset, an IPC, a seed and a device."""

    num_classes: int
    channels: int
    size: int
    ipc: int
    seed: int
    device: str = "cpu"
    repeat: int = 0  # a second, independent run of the same case (determinism)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The shape of the synthetic images the case must produce."""
        return self.num_classes * self.ipc, self.channels, self.size, self.size

    def dataset(self) -> RealDataset:
        return tiny_dataset(self.num_classes, self.channels, self.size, per_class=6, seed=7).to(self.device)

    def __str__(self) -> str:
        return (
            f"{self.num_classes} classes of {self.channels}x{self.size}x{self.size}, IPC {self.ipc}, "
            f"seed {self.seed}, {self.device}"
        )


GREY = _Case(3, 1, 28, ipc=2, seed=0)
COLOUR = _Case(12, 3, 32, ipc=1, seed=0)


@dataclass
class _RecordingContext(CondenseContext):
    """A context that remembers where the networks it built live: when built, and at every
    forward pass (a network moved after it was built, or fed inputs from elsewhere, runs on
    another device than the one asked for; the meta device shows that on a CPU alone)."""

    network_devices: set[torch.device] = field(default_factory=set)

    def build_network(self, arch: str, real: RealDataset, generator: torch.Generator, **options: Any) -> nn.Module:
        net = super().build_network(arch, real, generator, **options)
        self._note(net, ())
        net.register_forward_pre_hook(self._note)
        return net

    def _note(self, net: nn.Module, inputs: tuple[Any, ...]) -> None:
        tensors = [*net.parameters(), *net.buffers(), *(x for x in inputs if isinstance(x, Tensor))]
        self.network_devices |= {t.device for t in tensors}


class _Interrupted(BaseException):
    """Stops a run right after its first checkpoint (a BaseException: a method's ``except
    Exception`` must not swallow it, as it could not swallow a kill)."""


class _MemoryStateStore:
    """The kit's :class:`dcbench.method.contract.StateStore`: checkpoints every iteration, serialised as
    the host does, and, when ``interrupt``, stops the run after the first one before the last
    iteration."""

    def __init__(self, saved: bytes | None = None, interrupt: bool = False) -> None:
        self.saved = saved
        self.saved_iteration: int | None = None
        self.interrupt = interrupt

    def load(self) -> SavedState | None:
        if self.saved is None:
            return None
        try:
            payload = torch.load(io.BytesIO(self.saved), weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(
                f"the checkpoint state does not load with torch.load(weights_only=True): {type(exc).__name__}"
            ) from None
        return SavedState(payload["iteration"], payload["state"])

    def save(self, step: int, total: int, make_state: Any) -> None:
        if self.interrupt and self.saved is None and step < total:
            buffer = io.BytesIO()
            torch.save({"iteration": step, "state": plain_state(make_state(), "state")}, buffer)
            self.saved, self.saved_iteration = buffer.getvalue(), step
            raise _Interrupted


@dataclass
class _Run:
    case: _Case
    images: Tensor
    labels: Tensor
    manifest: dict[str, Any]
    seconds: float
    metrics: dict[str, Any]
    progress: list[tuple[int, int, dict[str, float]]]
    network_devices: set[torch.device]
    rng_touched: list[str]
    real_touched: list[str]
    resumed_at: int | None = None


def _global_rng_states(device: str) -> dict[str, Any]:
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
    }
    if torch.device(device).type == "cuda":
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b


# --- the suite -----------------------------------------------------------------------------------


class ConformanceSuite:
    """The conformance checks of one method; condensations are run once and shared by the checks.

    :param smoke_seconds: time limit of one ``smoke`` condensation of the 3-class tiny dataset.
    :param seed_independent: skip the seed-sensitivity check (default: the method's
        ``seed_independent`` class attribute, else False).
    :param devices: devices to check the method on (default: cpu, and cuda when available).
    :param max_abs_value: bound on the synthetic pixels in normalised space.
    :param architectures: what ``ctx.build_network`` can build (default: the built-in ones; pass
        ``load_plugins().architectures`` for a method that uses a plugin's architecture).
    """

    def __init__(
        self,
        method: Method,
        *,
        smoke_seconds: float = 10.0,
        seed_independent: bool | None = None,
        devices: Iterable[str] | None = None,
        max_abs_value: float = 100.0,
        architectures: Mapping[str, Architecture] | None = None,
    ) -> None:
        self.method = method
        self.label = str(getattr(method, "name", type(method).__name__))
        self.architectures = architectures
        self.smoke_seconds = smoke_seconds
        self.seed_independent = (
            bool(getattr(method, "seed_independent", False)) if seed_independent is None else seed_independent
        )
        self.devices = (
            tuple(devices) if devices is not None else (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",))
        )
        self.max_abs_value = max_abs_value
        self._runs: dict[_Case, _Run | AssertionError] = {}

    def __repr__(self) -> str:  # shown in pytest ids and failure reports
        return f"ConformanceSuite({self.label!r})"

    def skip_reason(self, check: str) -> str | None:
        if check == "seed_sensitivity" and self.seed_independent:
            return "the method is declared seed-independent"
        if check == "resume" and not getattr(self.method, "resumable", False):
            return "the method does not declare resumable = True (an interrupted cell restarts)"
        return None

    def run(self, check: str) -> None:
        """Run one check; raise AssertionError naming the method, the check and what is wrong."""
        if check not in CHECKS:
            raise ValueError(f"unknown conformance check {check!r}; checks are {', '.join(CHECKS)}")
        try:
            getattr(self, f"_check_{check}")()
        except Exception as exc:  # noqa: BLE001 - e.g. validate() rejecting a preset's own values
            why = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            raise AssertionError(f"method {self.label!r} fails conformance check {check!r}: {why}") from exc

    def run_all(self) -> None:
        """Run every applicable check; raise one AssertionError listing all failures."""
        failures = []
        for check in CHECKS:
            if self.skip_reason(check) is None:
                try:
                    self.run(check)
                except AssertionError as exc:
                    failures.append(str(exc))
        if failures:
            raise AssertionError("\n".join(failures))

    # --- condensations, each run once ---

    def _condense(self, case: _Case) -> _Run:
        if case not in self._runs:
            try:
                self._runs[case] = self._record(case)
            except AssertionError as exc:
                self._runs[case] = exc
        run = self._runs[case]
        if isinstance(run, AssertionError):
            raise run
        return run

    def _record(self, case: _Case, state_store: _MemoryStateStore | None = None) -> _Run:
        real = case.dataset()
        tensors = ("train_images", "train_labels", "test_images", "test_labels")
        snapshot = {name: getattr(real, name).clone() for name in tensors}
        progress: list[tuple[int, int, dict[str, float]]] = []
        ctx = _RecordingContext(
            device=torch.device(case.device),
            on_progress=lambda step, total, values: progress.append((step, total, dict(values))),
        )
        if self.architectures is not None:
            ctx.architectures = self.architectures
        before = _global_rng_states(case.device)
        # One CPU thread: tiny cases gain nothing from intra-op threads, and on a shared CPU threaded
        # small ops can be 100x slower, which would make the smoke time meaningless.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            condensed = condense(self.method, real, case.ipc, case.seed, "smoke", None, ctx, state_store=state_store)
        except Exception as exc:  # noqa: BLE001 - any failure of the method is a conformance failure
            first = first_line(exc)
            raise AssertionError(f"condensing {case} raised {type(exc).__name__}: {first}") from exc
        finally:
            torch.set_num_threads(threads)
        after = _global_rng_states(case.device)
        real_touched = [name for name in tensors if not torch.equal(getattr(real, name), snapshot[name])]
        synthetic = condensed.synthetic
        return _Run(
            case,
            synthetic.images,
            synthetic.labels,
            synthetic.manifest,
            condensed.seconds,
            condensed.metrics,
            progress,
            ctx.network_devices,
            [k for k in before if not _same_state(before[k], after[k])],
            real_touched,
            condensed.resumed_at,
        )

    # --- the checks ---

    def _check_metadata(self) -> None:
        m = self.method
        assert isinstance(getattr(m, "name", None), str) and METHOD_NAME.match(m.name), (
            f"name {getattr(m, 'name', None)!r} must be lower-case letters, digits and '_', starting with a letter"
        )
        assert isinstance(getattr(m, "version", None), str) and m.version, "version must be a non-empty string"
        assert isinstance(m.description, str) and m.description.strip(), (
            "description must say in one line what the method does (`dcbench list` shows it)"
        )
        assert m.native_eval_augmentation in AUGMENTATIONS, (
            f"native_eval_augmentation {m.native_eval_augmentation!r} is not one of {', '.join(AUGMENTATIONS)}"
        )
        for dataset in ("mnist", "fashion-mnist", "cifar10"):
            native = m.native_evaluation(dataset)
            assert isinstance(native, NativeEvaluation), (
                f"native_evaluation({dataset!r}) must return a dcbench.evaluation.NativeEvaluation, got {native!r}"
            )
        assert dataclasses.is_dataclass(getattr(m, "config_class", None)), "config_class must be a dataclass"
        unknown = sorted(set(getattr(m.config_class, "PRESETS", {})) - set(PRESETS))
        assert not unknown, f"config PRESETS names {unknown[0]!r}, which is not a preset ({', '.join(PRESETS)})"
        for preset in PRESETS:
            config = m.make_config(preset)
            assert isinstance(config, m.config_class), f"make_config({preset!r}) returned {type(config).__name__}"

    def _check_config_roundtrip(self) -> None:
        for preset in PRESETS:
            config = self.method.make_config(preset)
            stored = json.loads(json.dumps(config_to_dict(config)))
            again = self.method.make_config(preset, stored)
            assert again == config, f"preset {preset!r}: {config!r} comes back from JSON as {again!r}"
        run = self._condense(GREY)
        stored = json.loads(json.dumps(run.manifest["config"]))
        again = self.method.make_config("smoke", stored)
        assert again == self.method.make_config("smoke"), (
            f"the manifest's config {stored} does not rebuild the smoke config (got {again!r})"
        )

    def _check_shapes(self) -> None:
        for case in (GREY, COLOUR):
            run = self._condense(case)
            x, y, expected = run.images, run.labels, case.shape
            assert tuple(x.shape) == expected, f"{case}: images have shape {tuple(x.shape)}, expected {expected}"
            assert x.dtype == torch.float32, f"{case}: images are {x.dtype}, expected torch.float32"
            assert x.device.type == "cpu", f"{case}: returned images are on {x.device}, expected the CPU"
            assert torch.isfinite(x).all(), f"{case}: images contain NaN or infinite values"
            largest = float(x.abs().max())
            assert largest <= self.max_abs_value, (
                f"{case}: a pixel is {largest:.3g} in normalised space (bound {self.max_abs_value:g}); did it diverge?"
            )
            assert y.dtype == torch.int64 and tuple(y.shape) == (expected[0],), (
                f"{case}: labels are {y.dtype} of shape {tuple(y.shape)}, expected int64 of shape ({expected[0]},)"
            )

    def _check_labels(self) -> None:
        for case in (GREY, COLOUR):
            labels = self._condense(case).labels
            expected = class_major_labels(case.num_classes, case.ipc)
            assert torch.equal(labels, expected), (
                f"{case}: labels {labels.tolist()} are not class-major with {case.ipc} per class ({expected.tolist()})"
            )

    def _check_determinism(self) -> None:
        first, second = self._condense(GREY), self._condense(dataclasses.replace(GREY, repeat=1))
        assert torch.equal(first.labels, second.labels), f"{GREY}: two runs gave different labels"
        if not torch.equal(first.images, second.images):
            diff = float((first.images - second.images).abs().max())
            raise AssertionError(
                f"{GREY}: two runs gave different images (max difference {diff:.3g}); draw every "
                "random number from make_generator(seed, ...) and avoid nondeterministic ops"
            )

    def _check_seed_sensitivity(self) -> None:
        other = dataclasses.replace(GREY, seed=GREY.seed + 1)
        assert not torch.equal(self._condense(GREY).images, self._condense(other).images), (
            f"seeds {GREY.seed} and {other.seed} gave identical images; derive every random stream from the "
            "seed, or declare seed_independent = True on the method class"
        )

    def _check_global_rng(self) -> None:
        for run in [self._condense(c) for c in (GREY, COLOUR, *self._device_cases())]:
            assert not run.rng_touched, (
                f"{run.case}: the global RNG state of {', '.join(run.rng_touched)} changed; use explicit "
                "generators (dcbench.method.seeding.make_generator), never torch.manual_seed or generator-less draws"
            )
        # A draw inside torch.random.fork_rng() leaves the state as it was, but the set still
        # depends on it: condense under two other global states (in a fork of the caller's own).
        sets = []
        for state in (1, 2):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(state)
                sets.append(self._record(GREY).images)
        assert torch.equal(sets[0], sets[1]), (
            f"{GREY}: the set depends on the global RNG's state (a draw inside torch.random.fork_rng() "
            "or another generator-less draw); use explicit generators (dcbench.method.seeding.make_generator)"
        )

    def _device_cases(self) -> list[_Case]:
        return [dataclasses.replace(GREY, device=d) for d in self.devices if torch.device(d) != torch.device("cpu")]

    def _check_device(self) -> None:
        for case in [GREY, *self._device_cases()]:
            run = self._condense(case)
            stray = sorted(str(d) for d in run.network_devices if d.type != torch.device(case.device).type)
            assert not stray, (
                f"{case}: networks built through ctx.build_network ran on {', '.join(stray)}, not on the "
                f"context's {case.device}; keep every network and tensor on ctx.device"
            )
            assert run.images.device.type == "cpu" and tuple(run.images.shape) == case.shape, (
                f"{case}: expected images of shape {case.shape} on the CPU, got {tuple(run.images.shape)}"
            )

    def _check_real_data_untouched(self) -> None:
        run = self._condense(GREY)
        assert not run.real_touched, (
            f"{GREY}: condensing modified the real dataset's {', '.join(run.real_touched)}; copy before editing"
        )

    def _check_metrics(self) -> None:
        run = self._condense(GREY)
        iterations = run.metrics.get("iterations")
        assert isinstance(iterations, int) and not isinstance(iterations, bool) and iterations >= 0, (
            f"ctx.metrics['iterations'] must be set to a non-negative int, got {iterations!r}"
        )
        try:
            json.dumps(run.metrics)
        except (TypeError, ValueError) as exc:
            raise AssertionError(f"ctx.metrics must hold JSON values (it goes to metrics.json): {exc}") from None
        for step, total, values in run.progress:
            assert isinstance(step, int) and isinstance(total, int) and 0 <= step <= total, (
                f"ctx.progress({step!r}, {total!r}): expected integers with 0 <= step <= total"
            )
            for key, value in values.items():
                assert isinstance(value, (int, float)) and math.isfinite(value), (
                    f"ctx.progress metric {key}={value!r} is not a finite number"
                )

    def _check_resume(self) -> None:
        if not getattr(self.method, "resumable", False):
            return
        reference = self._condense(GREY)
        interrupted = _MemoryStateStore(interrupt=True)
        try:
            self._record(GREY, interrupted)
        except _Interrupted:
            pass
        else:
            raise AssertionError(
                f"{GREY}: the method declares resumable = True but never called "
                "ctx.checkpoint(step, total, make_state) before its last iteration "
                "(the smoke preset needs at least 2 iterations)"
            )
        k = interrupted.saved_iteration
        assert k is not None  # _Interrupted is raised only after a save
        resumed = self._record(GREY, _MemoryStateStore(saved=interrupted.saved))
        assert resumed.resumed_at == k, (
            f"{GREY}: the method did not call ctx.resume() (or ignored the state saved at iteration {k})"
        )
        repeated = sorted({step for step, _, _ in resumed.progress if step <= k})
        assert not repeated, f"{GREY}: resumed at iteration {k}, the method reported iterations {repeated} again"
        if not torch.equal(resumed.images, reference.images):
            diff = float((resumed.images - reference.images).abs().max())
            raise AssertionError(
                f"{GREY}: resuming at iteration {k} gave different images than an uninterrupted run (max "
                f"difference {diff:.3g}); draw random numbers per iteration (make_generator(seed, purpose, it)) "
                "and restore every tensor, optimiser state and counter the loop carries"
            )
        assert resumed.metrics.get("iterations") == reference.metrics.get("iterations"), (
            f"{GREY}: ctx.metrics['iterations'] differs after resuming"
        )

    def _check_smoke_time(self) -> None:
        # the faster of two runs: the first call in a process may pay one-off costs (lazy imports)
        seconds = min(self._condense(GREY).seconds, self._condense(dataclasses.replace(GREY, repeat=1)).seconds)
        assert seconds <= self.smoke_seconds, (
            f"the smoke preset took {seconds:.1f}s on {GREY}, the limit is {self.smoke_seconds:g}s; shrink the preset"
        )


def check_method(method: Method, **options: Any) -> None:
    """Run every conformance check on ``method``; raise one AssertionError listing the failures.
    ``options`` are those of :class:`ConformanceSuite`."""
    ConformanceSuite(method, **options).run_all()


def conformance_cases(methods: Iterable[Method], **options: Any) -> list[Any]:
    """``pytest.param(suite, check)`` for every method and check, with ids ``method-check`` and a skip
    mark where a check does not apply; the checks of one method share its condensations."""
    import pytest

    cases = []
    for method in methods:
        suite = ConformanceSuite(method, **options)
        for check in CHECKS:
            reason = suite.skip_reason(check)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            cases.append(pytest.param(suite, check, id=f"{suite.label}-{check}", marks=marks))
    return cases

"""A cell's identity: everything that changes its numbers, so that only equal cells are pooled.

Two results of one (method, dataset, IPC) may be averaged over seeds and compared only when the
method's code (method and plugin versions), its resolved config, the evaluation protocols, the
data (a content hash of the train and test tensors) and the numeric precision are all equal.
dcbench's own version matters through the protocol (its ``version`` field is part of the
protocol hash) and through the data fingerprint (loading, normalisation); the release number
itself is recorded in ``runs.csv`` but is not part of the identity, so a release that changes no
number does not split a store. Thread counts and the device are recorded, not identity.

Adding a field is one line in :class:`CellIdentity`; its default is the value that cells
written before the field existed had (e.g. ``precision = "fp32"``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dcbench.data.real import data_fingerprint as data_fingerprint  # re-exported: where a cell's data hash is made

#: the data fingerprint of cells written before fingerprints were recorded
UNRECORDED = "unrecorded"
#: runs.csv column of the identity key; a method with several identities in one
#: (dataset, IPC) is shown as ``method#key``
IDENTITY_COLUMN = "identity"
LABEL_SEPARATOR = "#"
KEY_LENGTH = 8


@dataclass(frozen=True)
class CellIdentity:
    """What a cell's numbers depend on. Field names are also the ``runs.csv`` column names."""

    method_name: str
    method_version: str | None = None
    plugin_version: str | None = None
    config_hash: str | None = None
    protocol_hash: str | None = None
    data_fingerprint: str = UNRECORDED
    precision: str = "fp32"  # cells written before the precision setting ran in fp32

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CellIdentity:
        """From a stored identity; fields it lacks (an older dcbench wrote it) take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def key(self) -> str:
        """A short stable hash of every field (what runs.csv groups by), in letters only so that
        no CSV reader takes it for a number."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
        letters = []
        for _ in range(KEY_LENGTH):
            value, digit = divmod(value, 26)
            letters.append(chr(ord("a") + digit))
        return "".join(letters)

    def differences(self, other: CellIdentity) -> list[str]:
        """``field a vs b`` for every field that differs, in field order."""
        return [
            f"{f.name} {getattr(self, f.name)} vs {getattr(other, f.name)}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


IDENTITY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CellIdentity))


def protocol_hash(protocols: Iterable[Mapping[str, Any]]) -> str:
    """A short hash of every evaluation protocol's full settings (order-independent)."""
    text = json.dumps(
        sorted((dict(p) for p in protocols), key=lambda p: json.dumps(p, sort_keys=True)), sort_keys=True, default=str
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:12]


def identity_of_metrics(metrics: Mapping[str, Any]) -> CellIdentity:
    """A stored cell's identity. Cells from before identities were recorded carry a fingerprint of
    config hash and protocol names only: their protocols are rebuilt from the evaluations and
    their data fingerprint is ``unrecorded``."""
    stored = metrics.get("fingerprint") or {}
    if "method_name" in stored:
        return CellIdentity.from_dict(stored)
    evaluations = metrics.get("evaluations") or []
    protocols = [ev["protocol"] for ev in evaluations if isinstance(ev, Mapping) and "protocol" in ev]
    return CellIdentity(
        method_name=metrics["cell"]["method"],
        method_version=metrics.get("method_version"),
        plugin_version=metrics.get("plugin_version"),
        config_hash=stored.get("config_hash"),
        protocol_hash=protocol_hash(protocols) if protocols else None,
    )


def label_identities(runs: pd.DataFrame) -> pd.Series:
    """The ``method`` label of each row: the method's name, or ``name#key`` where its cells of one
    (dataset, IPC) carry more than one identity, so that nothing downstream averages them."""
    if runs.empty:
        return pd.Series([], dtype=object, index=runs.index)
    counts = runs.groupby(["method_name", "dataset", "ipc"])[IDENTITY_COLUMN].transform("nunique")
    return runs["method_name"].where(counts <= 1, runs["method_name"] + LABEL_SEPARATOR + runs[IDENTITY_COLUMN])


def identity_notes(runs: pd.DataFrame) -> list[str]:
    """One line per (method, dataset, IPC) that holds more than one identity, naming each (with
    its seeds) and what differs. Empty for runs.csv files without identity columns."""
    needed = {"method_name", "dataset", "ipc", "synth_seed", IDENTITY_COLUMN, *IDENTITY_FIELDS}
    if runs.empty or not needed <= set(runs.columns):
        return []
    notes = []
    for (method, dataset, ipc), group in runs.groupby(["method_name", "dataset", "ipc"], sort=True):
        keys = sorted(group[IDENTITY_COLUMN].astype(str).unique())
        if len(keys) < 2:
            continue
        firsts = group.drop_duplicates(IDENTITY_COLUMN).set_index(IDENTITY_COLUMN)
        identities = {
            key: CellIdentity.from_dict(
                {f: (None if pd.isna(v) else v) for f, v in firsts.loc[key, list(IDENTITY_FIELDS)].items()}
            )
            for key in keys
        }
        named = []
        for key in keys:
            seeds = sorted(int(s) for s in group.loc[group[IDENTITY_COLUMN].astype(str) == key, "synth_seed"].unique())
            noun = "seed" if len(seeds) == 1 else "seeds"
            named.append(f"{method}{LABEL_SEPARATOR}{key} ({noun} {', '.join(map(str, seeds))})")
        # every field in which some identity differs from the first (not only the first two)
        differing = list(dict.fromkeys(d for key in keys[1:] for d in identities[keys[0]].differences(identities[key])))
        notes.append(
            f"{method} on {dataset} IPC {ipc} holds {len(keys)} identities, reported separately "
            f"and never averaged: {' and '.join(named)}; they differ in "
            f"{'; '.join(differing) or 'their identity key'} (spec.toml lists the specs that wrote them)."
        )
    return notes

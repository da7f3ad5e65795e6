"""Artifacts that cells share (expert trajectories, trained teachers): :mod:`dcbench.artifacts.store`."""

from dcbench.artifacts.store import Artifact, ArtifactStore, Builder, artifact_key, artifacts_root

__all__ = ["Artifact", "ArtifactStore", "Builder", "artifact_key", "artifacts_root"]

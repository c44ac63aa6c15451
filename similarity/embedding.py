"""The retrieval embedding of an image, from the ensemble's pooled features (pure: NumPy only).

The runtime returns each member's pooled backbone features (``Ensemble.run_with_features``: member name ->
(N, D), TTA-averaged) when the package declares them, or their member-average in ``ImageOutcome.extras``
when the package has features but no AI gate. Two embeddings were measured on the bundled model
(docs/similarity.md, ``scripts/retrieval_eval.py``):

- ``mean``: the members' features, weight-averaged, L2-normalised (D = 1280).
- ``gate_pca``: each member's features centred and projected on the top 64 principal components that the
  package's AI gate already carries (``gate_<member>_center/components.npy``, fitted on the training
  dermoscopy), each member's projection L2-normalised, concatenated and normalised again (members x 64:
  192 dimensions for the bundled 2.0.0, 256 for 1.3.1): a PCA stored in the package. Same precision@5 as
  ``mean`` (0.76 on the measured sample with 1.3.1; malignant queries 0.78 against 0.75), a fifth of the memory
  and search time.

``embed`` picks ``gate_pca`` when the package has the gate's arrays and ``mean`` otherwise; the method name is
stored with every vector, so vectors of different methods are never compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FEATURES_KEY = "features"
MEAN, GATE_PCA = "mean", "gate_pca"
METHODS = (MEAN, GATE_PCA)
# Principal components kept per member: 64 of the gate's 128 gave the same precision as all 128 (0.759 and 0.760)
# at half the search time (docs/similarity.md).
COMPONENTS_PER_MEMBER = 64


@dataclass(frozen=True)
class MemberProjection:
    center: np.ndarray  # (D,)
    components: np.ndarray  # (D, d)


@dataclass(frozen=True)
class Embeddings:
    """One row per image (None for an image without features) and the method that made them."""

    vectors: list[np.ndarray | None]
    method: str

    @property
    def dims(self) -> int | None:
        return next((int(v.shape[0]) for v in self.vectors if v is not None), None)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def embed_members(
    member_features: Mapping[str, np.ndarray],
    *,
    weights: Mapping[str, float] | None = None,
    projections: Mapping[str, MemberProjection] | None = None,
    method: str | None = None,
) -> tuple[np.ndarray, str]:
    """(N, d) unit vectors from per-member (N, D) features, and the method used (``gate_pca`` when every
    member has a projection and ``method`` does not ask for ``mean``)."""
    if not member_features:
        raise ValueError("no member features")
    names = sorted(member_features)
    if method is None:
        method = GATE_PCA if projections and all(n in projections for n in names) else MEAN
    if method not in METHODS:
        raise ValueError(f"unknown embedding method {method!r} (one of {', '.join(METHODS)})")
    if method == GATE_PCA:
        if not projections or any(n not in projections for n in names):
            raise ValueError("gate_pca needs a projection for every member")
        parts = []
        for name in names:
            p = projections[name]
            x = np.asarray(member_features[name], dtype=np.float32) - p.center
            parts.append(_unit(x @ p.components[:, :COMPONENTS_PER_MEMBER]))
        return _unit(np.concatenate(parts, axis=1)), GATE_PCA
    w = np.array([float((weights or {}).get(n, 1.0)) for n in names], dtype=np.float64)
    stacked = np.stack([np.asarray(member_features[n], dtype=np.float64) for n in names])
    return _unit(np.tensordot(w / w.sum(), stacked, axes=1)), MEAN


def projections_of(ensemble: Any) -> dict[str, MemberProjection] | None:
    """The members' PCA from the package's AI gate (``ensemble.ood``), or None when it has none."""
    gate = getattr(ensemble, "ood", None)
    if gate is None:
        return None
    return {
        name: MemberProjection(np.asarray(m.center, np.float32), np.asarray(m.components, np.float32))
        for name, m in gate.members.items()
    }


def embeddings_from_run(
    ensemble: Any, outcomes: Sequence[Any], member_features: Mapping[str, np.ndarray]
) -> Embeddings | None:
    """The embeddings of one ``run_with_features`` batch: from the per-member features when the runtime
    returned them, else from each outcome's ``extras["features"]`` (member-averaged); None when the package
    declares no features (such a package still serves: it just has no similar lesions)."""
    if member_features:
        weights = {m.name: m.weight for m in ensemble.manifest.members}
        vectors, method = embed_members(
            member_features, weights=weights, projections=projections_of(ensemble)
        )
        return Embeddings(list(vectors), method)
    rows = [getattr(o, "extras", {}).get(FEATURES_KEY) for o in outcomes]
    if not rows or all(r is None for r in rows):
        return None
    return Embeddings([None if r is None else _unit(np.ravel(r)) for r in rows], MEAN)

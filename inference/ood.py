"""Out-of-distribution score of the AI safety gate (pure: NumPy only).

The score reads each member's pooled backbone features (an extra output of the same fused ONNX session,
declared in the manifest as ``members[].outputs.features``), fitted on training dermoscopy by
``python -m training gate``. Two methods, chosen by measurement (docs/inference.md, "AI safety gate"):

- ``pca_residual`` (the default): the features are centred and projected on their top ``dims`` principal
  components; the score is the squared norm of what the projection leaves out (the residual), divided by the
  median residual of the fitting images. Dermoscopy lives close to that subspace; photographs, pages, screens
  and flat images do not. Measured: 98 % of generated non-dermoscopy above the threshold against 1 % of
  held-out dermoscopy.
- ``mahalanobis``: the squared Mahalanobis distance, inside the same subspace, to the nearest class mean under
  one shared covariance shrunk towards the identity (Lee et al. 2018), divided by ``dims``. Measured: it barely
  separates non-dermoscopy (16-28 % rejected), because the subspace keeps what varies among lesions and drops
  what makes a photograph different; kept for comparison.

The members' scores are averaged; an image scoring above ``gate.ood.threshold`` is ``not_dermoscopy``.
Arrays per member (float32 ``.npy`` files beside the ONNX files, each listed in the manifest with its sha256):
``center`` (D,), ``components`` (D, d), and ``scale`` (1,) for ``pca_residual`` or ``class_means`` (C, d) and
``precision`` (d, d) for ``mahalanobis``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METHODS: dict[str, tuple[str, ...]] = {
    "pca_residual": ("center", "components", "scale"),
    "mahalanobis": ("center", "components", "class_means", "precision"),
}
DEFAULT_METHOD = "pca_residual"


class GateArrayError(ValueError):
    """A gate array is missing, unreadable or of the wrong shape; the message names the file."""


@dataclass(frozen=True)
class MemberModel:
    method: str
    center: np.ndarray  # (D,)
    components: np.ndarray  # (D, d)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # scale, or class_means + precision

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    def distance(self, features: np.ndarray) -> np.ndarray:
        """The member's score for (N, D) features: (N,)."""
        x = np.asarray(features, dtype=np.float32).reshape(len(features), -1) - self.center
        z = x @ self.components
        if self.method == "pca_residual":
            residual = x - z @ self.components.T
            return np.einsum("nd,nd->n", residual, residual) / float(self.extra["scale"][0])
        best = None
        for mean in self.extra["class_means"]:
            diff = z - mean
            d2 = np.einsum("nd,de,ne->n", diff, self.extra["precision"], diff)
            best = d2 if best is None else np.minimum(best, d2)
        return best / self.dims

    def arrays(self) -> dict[str, np.ndarray]:
        return {"center": self.center, "components": self.components, **self.extra}


@dataclass(frozen=True)
class OodGate:
    """Per-member models and the threshold above which an image is not dermoscopy."""

    members: dict[str, MemberModel]
    threshold: float

    def score(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Mean over members of their scores: (N,). ``features``: member name -> (N, D)."""
        return np.mean([self.members[name].distance(features[name]) for name in self.members], axis=0)


def fit_member(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    method: str = DEFAULT_METHOD,
    dims: int = 128,
    shrinkage: float = 0.1,
) -> MemberModel:
    """Fit one member's model on (N, D) training features and their class labels (N,)."""
    if method not in METHODS:
        raise ValueError(f"unknown OOD method {method!r} ({', '.join(METHODS)})")
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    center = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - center, full_matrices=False)
    dims = min(dims, vt.shape[0] - 1)
    components = vt[:dims].T  # (D, d)
    z = (x - center) @ components
    if method == "pca_residual":
        residual = (x - center) - z @ components.T
        scale = float(np.median(np.einsum("nd,nd->n", residual, residual)))
        extra = {"scale": np.array([max(scale, 1e-12)], dtype=np.float32)}
    else:
        classes = np.unique(labels)
        means = np.stack([z[labels == c].mean(axis=0) for c in classes])
        within = z - means[np.searchsorted(classes, labels)]
        cov = within.T @ within / max(1, len(z) - len(classes))
        # Shrink towards a scaled identity (fixed intensity): a well-conditioned inverse.
        cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / dims * np.eye(dims)
        extra = {
            "class_means": means.astype(np.float32),
            "precision": np.linalg.inv(cov).astype(np.float32),
        }
    return MemberModel(method, center.astype(np.float32), components.astype(np.float32), extra)


def load_member(method: str, files: dict[str, Path], feature_size: int | None = None) -> MemberModel:
    """Load one member's arrays (``files``: array name -> path), checking dtype and shapes; a problem raises
    :class:`GateArrayError` naming the file."""
    arrays = {}
    for name in METHODS[method]:
        path = Path(files[name])
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise GateArrayError(f"gate array {path.name} cannot be read ({exc})") from exc
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
            raise GateArrayError(f"gate array {path.name} must hold finite floating-point numbers")
        arrays[name] = array.astype(np.float32)

    def bad(name: str, shape) -> GateArrayError:
        return GateArrayError(
            f"gate array {Path(files[name]).name} has shape {shape}, expected {arrays_expected[name]}"
        )

    center, components = arrays.pop("center"), arrays.pop("components")
    dims = components.shape[1] if components.ndim == 2 else "d"
    arrays_expected = {
        "center": "(D,)",
        "components": f"({center.shape[0] if center.ndim == 1 else 'D'}, d)",
        "scale": "(1,)",
        "class_means": f"(classes, {dims})",
        "precision": f"({dims}, {dims})",
    }
    if center.ndim != 1 or (feature_size is not None and center.shape[0] != feature_size):
        raise bad("center", center.shape)
    if components.ndim != 2 or components.shape[0] != center.shape[0]:
        raise bad("components", components.shape)
    if method == "pca_residual":
        if arrays["scale"].shape != (1,) or arrays["scale"][0] <= 0:
            raise bad("scale", arrays["scale"].shape)
    else:
        means, precision = arrays["class_means"], arrays["precision"]
        if means.ndim != 2 or means.shape[1] != dims or len(means) < 1:
            raise bad("class_means", means.shape)
        if precision.shape != (dims, dims):
            raise bad("precision", precision.shape)
    return MemberModel(method, center, components, arrays)

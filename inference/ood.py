"""Out-of-distribution score of the AI safety gate (pure: NumPy only).

The score is a Mahalanobis distance of each member's pooled backbone features (an extra output of the same
fused ONNX session, declared in the manifest as ``members[].outputs.features``) to class-conditional
Gaussians with one shared, shrunk covariance (Lee et al. 2018), fitted on training dermoscopy by
``python -m training gate``. Per member the features are centred and projected on their top principal
components (``dims``), where the Gaussians live; the distance is divided by ``dims`` (so that dermoscopy
scores about 1) and the members' distances are averaged. An image scoring above ``gate.ood.threshold``
is ``not_dermoscopy``.

Arrays per member (float32 ``.npy`` files beside the ONNX files, each listed in the manifest with its sha256):
``center`` (D,), ``components`` (D, d), ``class_means`` (C, d), ``precision`` (d, d).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARRAY_NAMES = ("center", "components", "class_means", "precision")
METHOD = "mahalanobis"


class GateArrayError(ValueError):
    """A gate array is missing, unreadable or of the wrong shape; the message names the file."""


@dataclass(frozen=True)
class MemberGaussians:
    center: np.ndarray  # (D,)
    components: np.ndarray  # (D, d)
    class_means: np.ndarray  # (C, d)
    precision: np.ndarray  # (d, d)

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Minimum over classes of the squared Mahalanobis distance, divided by ``dims``: (N,)."""
        z = (
            np.asarray(features, dtype=np.float32).reshape(len(features), -1) - self.center
        ) @ self.components
        best = None
        for mean in self.class_means:
            diff = z - mean
            d2 = np.einsum("nd,de,ne->n", diff, self.precision, diff)
            best = d2 if best is None else np.minimum(best, d2)
        return best / self.dims

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAY_NAMES}


@dataclass(frozen=True)
class OodGate:
    """Per-member Gaussians and the threshold above which an image is not dermoscopy."""

    members: dict[str, MemberGaussians]
    threshold: float

    def score(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Mean over members of the normalised distance: (N,). ``features``: member name -> (N, D)."""
        return np.mean([self.members[name].distance(features[name]) for name in self.members], axis=0)


def fit_member(
    features: np.ndarray, labels: np.ndarray, *, dims: int = 64, shrinkage: float = 0.1
) -> MemberGaussians:
    """Fit one member's Gaussians on (N, D) training features and their class labels (N,)."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    center = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - center, full_matrices=False)
    dims = min(dims, vt.shape[0])
    components = vt[:dims].T  # (D, d)
    z = (x - center) @ components
    classes = np.unique(labels)
    means = np.stack([z[labels == c].mean(axis=0) for c in classes])
    within = z - means[np.searchsorted(classes, labels)]
    cov = within.T @ within / max(1, len(z) - len(classes))
    # Shrink towards a scaled identity (Ledoit-Wolf style, fixed intensity): a well-conditioned inverse.
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / dims * np.eye(dims)
    return MemberGaussians(
        center=center.astype(np.float32),
        components=components.astype(np.float32),
        class_means=means.astype(np.float32),
        precision=np.linalg.inv(cov).astype(np.float32),
    )


def load_member(files: dict[str, Path], feature_size: int | None = None) -> MemberGaussians:
    """Load one member's arrays (``files``: array name -> path), checking dtype and shapes; a problem raises
    :class:`GateArrayError` naming the file."""
    arrays = {}
    for name in ARRAY_NAMES:
        path = Path(files[name])
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise GateArrayError(f"gate array {path.name} cannot be read ({exc})") from exc
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
            raise GateArrayError(f"gate array {path.name} must hold finite floating-point numbers")
        arrays[name] = array.astype(np.float32)
    center, components = arrays["center"], arrays["components"]
    means, precision = arrays["class_means"], arrays["precision"]
    if center.ndim != 1 or (feature_size is not None and center.shape[0] != feature_size):
        raise GateArrayError(f"gate array {Path(files['center']).name} has shape {center.shape}")
    if components.ndim != 2 or components.shape[0] != center.shape[0]:
        raise GateArrayError(
            f"gate array {Path(files['components']).name} has shape {components.shape}, "
            f"expected ({center.shape[0]}, dims)"
        )
    dims = components.shape[1]
    if means.ndim != 2 or means.shape[1] != dims or len(means) < 1:
        raise GateArrayError(f"gate array {Path(files['class_means']).name} has shape {means.shape}")
    if precision.shape != (dims, dims):
        raise GateArrayError(
            f"gate array {Path(files['precision']).name} has shape {precision.shape}, expected ({dims}, {dims})"
        )
    return MemberGaussians(center=center, components=components, class_means=means, precision=precision)

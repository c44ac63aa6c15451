"""The ONNX Runtime ensemble (pure: no Django). Workers, the registry's checks and the benchmark all use it.

One :class:`Ensemble` loads and checks one ``InferenceSession`` per member, then, where the members allow it,
runs them as one fused graph in a single session (``inference.sessions`` builds both), created once per
process and cached per model version (:func:`cached_ensemble`). All images of a case run as one batch; member
probabilities are averaged with the manifest's weights; horizontal-flip test-time augmentation doubles the
batch instead of doubling the calls.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from inference.calibration import calibrated_differential
from inference.explain import CAM_KEY, MAPPABLE_RESIZE, combine_maps, member_map
from inference.ood import GateArrayError, OodGate, load_member
from inference.package import Manifest, MemberSpec, PackageError, gate_ood_spec, member_output
from inference.preprocessing import ImageSpec, hflip, image_tensor, load_image, metadata_vector
from inference.sessions import (
    CPU,
    FUSED_METADATA,
    RuntimeConfig,
    _check_signature,
    _failed_member,
    _member_session,
    _short,
    fuse_members,
    fused_image_input,
    select_providers,
    session_options,
)

logger = logging.getLogger(__name__)

# Model outputs are probabilities; allow float rounding at the edges, nothing more.
_UNIT_TOLERANCE = 1e-4


class ModelError(RuntimeError):
    """A member failed to run or produced something that is not a probability of the expected shape."""


@dataclass(frozen=True)
class ImageOutcome:
    """The ensemble's answer for one image. ``probability``, ``member_probabilities`` and
    ``class_probabilities`` are calibrated when the package carries a calibration map; ``raw_probability`` is
    the ensemble's probability before it. ``extras``: the members' declared extra outputs (``outputs`` in the
    manifest), TTA-averaged and weight-averaged across the members that declare them, one vector per key."""

    probability: float
    member_probabilities: dict[str, float]
    class_probabilities: dict[str, float] | None = None
    raw_probability: float | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    ood_score: float | None = None  # the AI gate's out-of-distribution score; None when the gate is off
    # Where the model looked: the members' Grad-CAM of P(malignant), TTA- and member-averaged, on the finest
    # member grid, in [0, 1] (``inference.explain``); None when no member declares ``outputs.cam``.
    heatmap: np.ndarray | None = None


@dataclass(frozen=True)
class BatchOutcome:
    images: list[ImageOutcome]
    model_ms: float
    preprocess_ms: float

    @property
    def model_ms_per_image(self) -> float:
        return self.model_ms / max(len(self.images), 1)


@dataclass(frozen=True)
class BatchInputs:
    """Preprocessed tensors: one image batch per distinct member image spec, and the metadata batch."""

    images: dict[ImageSpec, np.ndarray]
    metadata: np.ndarray

    def __len__(self) -> int:
        return int(self.metadata.shape[0])


Metadata = tuple[Any, Any, Any]  # (age, sex, site); None or "unknown" for what is not known


# The member output key under which the AI gate's features travel when no gate declares its own.
FEATURES_KEY = "features"


def feature_outputs(manifest: Manifest) -> dict[int, str] | None:
    """Member index -> the tensor the AI gate reads (``members[].outputs.<gate.ood.output>``), or None when the
    package has no OOD gate."""
    ood = gate_ood_spec(manifest)
    if ood is None:
        return None
    return {
        k: member_output(manifest, k, ood["output"])
        for k, member in enumerate(manifest.members)
        if member.name in ood["arrays"]
    }


def load_ood_gate(folder: Path, manifest: Manifest) -> OodGate | None:
    """The package's OOD gate (its arrays loaded and checked), or None when it has none. A corrupt array
    raises :class:`PackageError` naming the file."""
    ood = gate_ood_spec(manifest)
    if ood is None:
        return None
    members = {}
    for member in manifest.members:
        if member.name not in ood["arrays"]:
            continue  # not part of the gate (added after the gate was fitted)
        files = {name: Path(folder) / item["file"] for name, item in ood["arrays"][member.name].items()}
        try:
            members[member.name] = load_member(ood["method"], files)
        except GateArrayError as exc:
            raise PackageError(f"member '{member.name}': {exc}") from exc
    return OodGate(members=members, threshold=float(ood["threshold"]))


def _with_features(manifest: Manifest, key: str, tensors: dict[int, str]) -> Manifest:
    """The manifest with each member's feature tensor declared as its ``key`` extra output, so that the
    gate's features come out of the same (fused) session run as the probabilities."""
    members = tuple(
        replace(m, outputs={**m.outputs, key: tensors[k]}) if k in tensors else m
        for k, m in enumerate(manifest.members)
    )
    return replace(manifest, members=members)


def _without_output(manifest: Manifest, key: str) -> Manifest:
    members = tuple(
        replace(m, outputs={k: v for k, v in m.outputs.items() if k != key}) for m in manifest.members
    )
    return replace(manifest, members=members)


class Ensemble:
    """The members of one model version, ready to run."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        config: RuntimeConfig | None = None,
        *,
        fuse: bool = True,
        features: dict[int, str] | None = None,
        heatmaps: bool = True,
    ):
        """``features``: member index -> tensor to return as the gate's features (``training gate`` fits a
        gate this way); by default the tensors the package's OOD gate declares. ``heatmaps=False`` leaves the
        members' ``outputs.cam`` unread (the benchmark's baseline)."""
        self.folder = Path(folder)
        self.ood = load_ood_gate(self.folder, manifest)
        gate = gate_ood_spec(manifest)
        self.feature_key = gate["output"] if gate else FEATURES_KEY
        tensors = features if features is not None else (feature_outputs(manifest) or {})
        if not heatmaps:
            manifest = _without_output(manifest, CAM_KEY)
        self.manifest = manifest = (
            _with_features(manifest, self.feature_key, tensors) if tensors else manifest
        )
        self.has_features = bool(tensors)
        self.config = config or RuntimeConfig()
        shared = len(manifest.members) > 1
        fuse = fuse and shared
        self.sessions = []
        for member in manifest.members:
            # Each member is loaded and checked on its own, so that an error names the member.
            session = _member_session(self.folder, member, self.config, shared=shared)
            _check_signature(session, member, manifest)
            if not fuse:
                self.sessions.append(session)
            del session  # when fusing, one member's session at a time: a lower peak of memory
        self.fused = self._fused_session() if fuse else None
        if fuse and self.fused is None:  # the members cannot share one graph: one session each
            self.sessions = [
                _member_session(self.folder, member, self.config, shared=True) for member in manifest.members
            ]
        total = sum(m.weight for m in manifest.members)
        self.weights = np.array([m.weight / total for m in manifest.members], dtype=np.float64)
        self.specs = tuple(dict.fromkeys(m.image for m in manifest.members))
        self.has_heatmaps = any(CAM_KEY in m.outputs for m in manifest.members)

    def _fused_session(self):
        try:
            model = fuse_members(self.folder, self.manifest)
            if model is None:
                return None
            return ort.InferenceSession(
                model,
                sess_options=session_options(self.config, shared=False),
                providers=select_providers(self.config.providers),
            )
        except Exception as exc:  # noqa: BLE001 - the members, checked one by one, still run
            logger.warning(
                "%s: the members could not be fused into one session (%s); they run as one session each",
                self.manifest.label,
                _short(exc),
            )
            return None

    @property
    def providers(self) -> list[str]:
        session = self.fused or (self.sessions[0] if self.sessions else None)
        return session.get_providers() if session is not None else []

    def prepare(self, images: Sequence[Any], metadata: Sequence[Metadata]) -> BatchInputs:
        """Decode and preprocess images (bytes, paths, files or PIL images) once per distinct member spec.

        Raises ``PreprocessingError`` for an unreadable image or impossible metadata.
        """
        if len(images) != len(metadata):
            raise ValueError("one metadata triple per image is needed")
        decoded = [_decode(source) for source in images]
        batches = {spec: np.stack([image_tensor(image, spec) for image in decoded]) for spec in self.specs}
        meta = np.stack(
            [metadata_vector(age, sex, site, self.manifest.metadata) for age, sex, site in metadata]
        )
        return BatchInputs(images=batches, metadata=meta)

    def run(self, inputs: BatchInputs) -> tuple[list[ImageOutcome], float]:
        """Run every member on the batch; return the outcomes (with the OOD score when the package has a gate)
        and the model time in milliseconds."""
        outcomes, features, model_ms = self.run_with_features(inputs)
        if self.ood is not None and features:
            scores = self.ood.score(features)
            outcomes = [replace(o, ood_score=float(s)) for o, s in zip(outcomes, scores, strict=True)]
        return outcomes, model_ms

    def run_with_features(
        self, inputs: BatchInputs
    ) -> tuple[list[ImageOutcome], dict[str, np.ndarray], float]:
        """:meth:`run`, also returning the AI gate's pooled features (member name -> (N, D); empty when the
        package declares none), without the OOD score."""
        if self.fused is not None:
            return self._run_fused(inputs)
        n = len(inputs)
        manifest = self.manifest
        started = time.perf_counter()
        member_outputs, member_extras = [], []
        for member, session in zip(manifest.members, self.sessions, strict=True):
            batch = inputs.images[member.image]
            meta = inputs.metadata
            if manifest.tta_hflip:
                batch = np.concatenate([batch, hflip(batch)])
                meta = np.concatenate([meta, meta])
            feed = {member.image_input: np.ascontiguousarray(batch, dtype=np.float32)}
            if member.metadata_input:
                feed[member.metadata_input] = meta.astype(np.float32)
            extra_keys = list(member.outputs)
            try:
                raw, *extra = session.run([member.output, *member.outputs.values()], feed)
            except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
                raise ModelError(f"member '{member.name}' failed to run ({_short(exc)})") from exc
            probs = self._class_probabilities(member, raw, len(batch))
            if manifest.tta_hflip:
                probs = (probs[:n] + probs[n:]) / 2.0
            member_outputs.append(probs)
            member_extras.append(self._extra_outputs(member, dict(zip(extra_keys, extra, strict=True)), n))
        model_ms = (time.perf_counter() - started) * 1000.0
        return self._finish(member_outputs, n, member_extras, model_ms)

    def _run_fused(self, inputs: BatchInputs) -> tuple[list[ImageOutcome], dict[str, np.ndarray], float]:
        n = len(inputs)
        manifest = self.manifest
        started = time.perf_counter()
        feed = {}
        for spec, batch in inputs.images.items():
            batch = np.concatenate([batch, hflip(batch)]) if manifest.tta_hflip else batch
            feed[fused_image_input(spec)] = np.ascontiguousarray(batch, dtype=np.float32)
        if any(m.metadata_input for m in manifest.members):
            meta = np.concatenate([inputs.metadata] * 2) if manifest.tta_hflip else inputs.metadata
            feed[FUSED_METADATA] = meta.astype(np.float32)
        names = [f"m{k}/{m.output}" for k, m in enumerate(manifest.members)]
        extra_names = [
            (k, key, f"m{k}/{tensor}")
            for k, m in enumerate(manifest.members)
            for key, tensor in m.outputs.items()
        ]
        try:
            raws = self.fused.run(names + [name for _, _, name in extra_names], feed)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            member = _failed_member(exc, manifest)
            where = f"member '{member}'" if member else "the ensemble"
            raise ModelError(f"{where} failed to run ({_short(exc)})") from exc
        rows = 2 * n if manifest.tta_hflip else n
        member_outputs = []
        for member, raw in zip(manifest.members, raws[: len(names)], strict=True):
            probs = self._class_probabilities(member, raw, rows)
            member_outputs.append((probs[:n] + probs[n:]) / 2.0 if manifest.tta_hflip else probs)
        extras_raw: list[dict[str, Any]] = [{} for _ in manifest.members]
        for (k, key, _), value in zip(extra_names, raws[len(names) :], strict=True):
            extras_raw[k][key] = value
        member_extras = [
            self._extra_outputs(member, raw, n)
            for member, raw in zip(manifest.members, extras_raw, strict=True)
        ]
        model_ms = (time.perf_counter() - started) * 1000.0
        return self._finish(member_outputs, n, member_extras, model_ms)

    def _finish(
        self,
        member_outputs: list[np.ndarray],
        n: int,
        member_extras: list[dict[str, np.ndarray]],
        model_ms: float,
    ) -> tuple[list[ImageOutcome], dict[str, np.ndarray], float]:
        """The gate's features stay per member (the OOD gate scores each member's own feature space); every
        other extra output is averaged over the members."""
        maps = [
            (w, extras.pop(CAM_KEY))
            for w, member, extras in zip(self.weights, self.manifest.members, member_extras, strict=True)
            if CAM_KEY in extras and member.image.resize in MAPPABLE_RESIZE
        ]
        for extras in member_extras:
            extras.pop(CAM_KEY, None)
        features = {}
        if self.has_features:
            for member, extras in zip(self.manifest.members, member_extras, strict=True):
                if self.feature_key in extras:
                    features[member.name] = extras.pop(self.feature_key).astype(np.float32)
        outcomes = self._combine(member_outputs, n, member_extras)
        heatmaps = combine_maps(maps)
        if heatmaps is not None:
            outcomes = [replace(o, heatmap=h) for o, h in zip(outcomes, heatmaps, strict=True)]
        return outcomes, features, model_ms

    def _extra_outputs(self, member: MemberSpec, raw: dict[str, Any], n: int) -> dict[str, np.ndarray]:
        """A member's extra outputs as (N, width) float64, TTA rows averaged."""
        rows = 2 * n if self.manifest.tta_hflip else n
        out = {}
        for key, value in raw.items():
            if key == CAM_KEY:  # a map per view: the flipped view is flipped back before averaging
                try:
                    out[key] = member_map(value, n, tta_hflip=self.manifest.tta_hflip)
                except ValueError as exc:
                    raise ModelError(f"member '{member.name}' returned {exc} for its output 'cam'") from exc
                continue
            array = np.asarray(value, dtype=np.float64)
            if array.ndim < 1 or array.shape[0] != rows or not np.all(np.isfinite(array)):
                raise ModelError(
                    f"member '{member.name}' returned shape {list(array.shape)} or non-finite values for its "
                    f"output '{key}' (batch of {rows})"
                )
            array = array.reshape(rows, -1)
            out[key] = (array[:n] + array[n:]) / 2.0 if self.manifest.tta_hflip else array
        return out

    def _combine(
        self,
        member_outputs: list[np.ndarray],
        n: int,
        member_extras: list[dict[str, np.ndarray]] | None = None,
    ) -> list[ImageOutcome]:
        stacked = np.stack(member_outputs)  # (members, N, classes)
        combined = np.tensordot(self.weights, stacked, axes=1)  # (N, classes)
        extras = combine_extra_outputs(self.weights, member_extras or [{} for _ in member_outputs])
        differential = self.manifest.differential
        if differential is not None and differential.output in extras:
            width = extras[differential.output].shape[1]
            if width != len(differential.classes):
                raise ModelError(
                    f"the members' '{differential.output}' output has {width} columns, but the differential "
                    f"names {len(differential.classes)} classes"
                )
        return [self._outcome(i, combined, stacked, extras) for i in range(n)]

    def warm_up(self, batch_size: int) -> float:
        """Run one synthetic batch of ``batch_size`` images (unknown metadata) so that the first real case of
        that size does not pay ONNX Runtime's first-run costs; returns the milliseconds it took."""
        rng = np.random.default_rng(0)
        images = [
            Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8))
            for _ in range(max(1, batch_size))
        ]
        _, model_ms = self.run(self.prepare(images, [(None, None, None)] * len(images)))
        return model_ms

    def predict(self, images: Sequence[Any], metadata: Sequence[Metadata]) -> BatchOutcome:
        started = time.perf_counter()
        inputs = self.prepare(images, metadata)
        preprocess_ms = (time.perf_counter() - started) * 1000.0
        outcomes, model_ms = self.run(inputs)
        return BatchOutcome(images=outcomes, model_ms=model_ms, preprocess_ms=preprocess_ms)

    def _class_probabilities(self, member: MemberSpec, raw: Any, n: int) -> np.ndarray:
        """Member output as (N, classes) float64 probabilities; binary is (N, 1) = P(positive)."""
        where = f"member '{member.name}'"
        out = np.asarray(raw, dtype=np.float64)
        if out.ndim == 1:
            out = out[:, None]
        manifest = self.manifest
        if out.ndim != 2 or out.shape[0] != n:
            raise ModelError(f"{where} returned shape {list(np.shape(raw))} for a batch of {n}")
        if manifest.task == "binary":
            if out.shape[1] == 2:
                out = out[:, [manifest.positive_indices[0]]]
            elif out.shape[1] != 1:
                raise ModelError(f"{where} returned {out.shape[1]} columns; a binary member returns 1 or 2")
        elif out.shape[1] != len(manifest.class_names):
            raise ModelError(
                f"{where} returned {out.shape[1]} columns for {len(manifest.class_names)} classes"
            )
        if not np.all(np.isfinite(out)):
            raise ModelError(f"{where} returned NaN or infinite values")
        if out.min() < -_UNIT_TOLERANCE or out.max() > 1 + _UNIT_TOLERANCE:
            raise ModelError(
                f"{where} returned values outside [0, 1] (min {out.min():.4g}, max {out.max():.4g}): "
                "its output is not a probability"
            )
        return np.clip(out, 0.0, 1.0)

    def _outcome(
        self, i: int, combined: np.ndarray, stacked: np.ndarray, extras: dict[str, np.ndarray] | None = None
    ) -> ImageOutcome:
        manifest = self.manifest
        names = [m.name for m in manifest.members]
        image_extras = {key: value[i] for key, value in (extras or {}).items()}
        if manifest.task == "binary":
            raw = float(combined[i, 0])
            members = {n: float(stacked[k, i, 0]) for k, n in enumerate(names)}
            classes = None
        else:
            positive = list(manifest.positive_indices)
            raw = float(np.clip(combined[i, positive].sum(), 0.0, 1.0))
            members = {
                n: float(np.clip(stacked[k, i, positive].sum(), 0.0, 1.0)) for k, n in enumerate(names)
            }
            classes = dict(zip(manifest.class_names, combined[i], strict=True))
        differential = manifest.differential
        if differential is not None and differential.output in image_extras:
            classes = dict(zip(differential.classes, image_extras[differential.output], strict=True))
        probability = raw
        if manifest.calibration is not None:
            probability = float(manifest.calibrate(raw))
            members = {n: float(manifest.calibrate(p)) for n, p in members.items()}
        weighted = differential is not None and differential.weights is not None
        if classes is not None and (manifest.calibration is not None or weighted):
            classes = self._calibrated_classes(classes, probability)
        elif classes is not None:
            classes = {c: float(v) for c, v in classes.items()}
        return ImageOutcome(
            probability=probability,
            member_probabilities=members,
            class_probabilities=classes,
            raw_probability=raw,
            extras=image_extras,
        )

    def _calibrated_classes(self, classes: dict[str, float], probability: float) -> dict[str, float]:
        """Class probabilities rescaled so that the malignant ones sum to the (calibrated) risk shown."""
        names = list(classes)
        differential = self.manifest.differential
        malignant = set(differential.malignant) if differential else set(self.manifest.positive_classes)
        weights = None
        if (
            differential is not None
            and differential.weights is not None
            and names == list(differential.classes)
        ):
            weights = np.asarray(differential.weights)
        values = calibrated_differential(
            np.array([[classes[c] for c in names]]),
            np.array([c in malignant for c in names]),
            np.array([probability]),
            weights,
        )[0]
        return {c: float(v) for c, v in zip(names, values, strict=True)}


def combine_extra_outputs(
    weights: np.ndarray, member_extras: list[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Weighted mean of each extra output over the members that declare it (weights renormalised)."""
    keys = dict.fromkeys(key for extras in member_extras for key in extras)
    out = {}
    for key in keys:
        having = [(w, extras[key]) for w, extras in zip(weights, member_extras, strict=True) if key in extras]
        if len({value.shape for _, value in having}) != 1:
            raise ModelError(f"the members' '{key}' outputs have different shapes")
        total = sum(w for w, _ in having)
        out[key] = sum(w * value for w, value in having) / total
    return out


def _decode(source: Any) -> Image.Image:
    return load_image(source)


def smoke_test(folder: Path, manifest: Manifest, config: RuntimeConfig | None = None) -> Ensemble:
    """Load every member and run a small synthetic batch (two images, known and unknown metadata) through
    the ensemble; raise :class:`PackageError` naming the problem if anything is off."""
    ensemble = Ensemble(folder, manifest, config or RuntimeConfig(providers=(CPU,)))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, size=(64, 80, 3), dtype=np.uint8)) for _ in range(2)]
    site = manifest.metadata.sites[0] if manifest.metadata.sites else None
    sex = manifest.metadata.sexes[0] if manifest.metadata.sexes else None
    try:
        outcomes, _ = ensemble.run(ensemble.prepare(images, [(50, sex, site), (None, None, None)]))
    except ModelError as exc:
        raise PackageError(f"smoke test failed: {exc}") from exc
    for outcome in outcomes:
        if not 0.0 <= outcome.probability <= 1.0:
            raise PackageError(
                f"smoke test failed: ensemble probability {outcome.probability} is outside [0, 1]"
            )
    return ensemble


_CACHE: OrderedDict[str, Ensemble] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def cached_ensemble(key: str, loader: Callable[[], Ensemble], *, keep: int = 2) -> Ensemble:
    """The ensemble for ``key`` (a model version), loaded once per process. The ``keep`` most recently used
    versions stay in memory so that an activation or a rollback does not reload on every case."""
    with _CACHE_LOCK:
        ensemble = _CACHE.get(key)
        if ensemble is None:
            ensemble = loader()
            _CACHE[key] = ensemble
        _CACHE.move_to_end(key)
        while len(_CACHE) > keep:
            _CACHE.popitem(last=False)
        return ensemble


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


# ONNX Runtime sessions are not fork-safe: their thread pools do not exist in a forked child (a prefork
# worker's replacement child, after a time-limit kill say), and the lock may be held by the parent's heartbeat
# thread at the moment of the fork. A child therefore starts with an empty cache and a fresh lock. The parent's
# sessions are kept referenced, not destroyed: destroying them would join threads that are not there.
_INHERITED: list[Ensemble] = []


def _forget_sessions_after_fork() -> None:
    global _CACHE_LOCK
    _CACHE_LOCK = threading.Lock()
    _INHERITED.extend(_CACHE.values())
    _CACHE.clear()


os.register_at_fork(after_in_child=_forget_sessions_after_fork)

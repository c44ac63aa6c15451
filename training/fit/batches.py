"""Training batches: pixels (normalised per batch), cached frozen-backbone features and activations, mixup and
metadata dropout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from inference.preprocessing import ImageSpec
from training import data as data_mod
from training.backbones import backbone_info
from training.fit.config import N_VARIANTS, FitConfig

log = logging.getLogger("training")


def _mixup(inputs: tuple, labels: np.ndarray, weights, rng: np.random.Generator, alpha: float):
    """Mix a batch with a shuffled copy of itself: x = lam * x + (1 - lam) * x[perm], the same for labels
    (one-hot rows or binary floats) and class weights; lam ~ Beta(alpha, alpha), one per batch."""
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(len(labels))

    def mix(a: np.ndarray) -> np.ndarray:
        return (lam * a + (1.0 - lam) * a[perm]).astype(a.dtype)

    mixed_weights = None if weights is None else mix(weights)
    return tuple(mix(x) for x in inputs), mix(labels), mixed_weights


class _Batches:
    """Factory for a keras.utils.PyDataset over cached uint8 pixels (normalised per batch)."""

    @staticmethod
    def make(
        pixels: np.ndarray,
        metadata: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | None,
        spec: ImageSpec,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        workers: int = 1,
        mixup: float = 0.0,
        metadata_dropout: float = 0.0,
    ):
        import keras

        class Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__(workers=workers, use_multiprocessing=False)
                self.rng = np.random.default_rng(seed)
                self.order = np.arange(len(pixels))
                self.epoch = -1
                self.on_epoch_end()

            def __len__(self) -> int:
                return data_mod.batches(len(pixels), batch_size)

            def __getitem__(self, index: int):
                rows = np.sort(self.order[index * batch_size : (index + 1) * batch_size])
                meta = metadata[rows]
                if metadata_dropout > 0 and shuffle:
                    rng = np.random.default_rng((seed, self.epoch, index, 1))
                    meta = data_mod.drop_metadata(meta, metadata_dropout, rng)
                x = (data_mod.normalised(pixels[rows], spec), meta)
                y, w = labels[rows], None if weights is None else weights[rows]
                if mixup > 0 and shuffle:
                    x, y, w = _mixup(x, y, w, np.random.default_rng((seed, self.epoch, index)), mixup)
                return (x, y) if w is None else (x, y, w)

            def on_epoch_end(self) -> None:
                self.epoch += 1
                if shuffle:
                    self.rng.shuffle(self.order)

        return Batches()


def _features(backbone, pixels: np.ndarray, spec: ImageSpec, batch_size: int, *, flip: bool) -> np.ndarray:
    from tqdm import tqdm

    out = []
    for start in tqdm(range(0, len(pixels), batch_size), desc="features", unit="batch", leave=False):
        batch = data_mod.normalised(pixels[start : start + batch_size], spec)
        if flip:
            batch = batch[:, :, ::-1, :]
        out.append(np.asarray(backbone.predict_on_batch(batch), dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, int(backbone.output.shape[-1])), np.float32)


def _cached_split(dual, config: FitConfig):
    """(bottom, top) when the top blocks can be trained on cached activations, else None."""
    from training.backbones import lite_block_boundaries, split_lite

    if config.finetune_mode != "cached" or config.top_blocks < 1:
        return None
    starts = lite_block_boundaries(dual.backbone)
    if not starts or config.top_blocks >= len(starts):
        return None
    return split_lite(dual.backbone, len(starts) - config.top_blocks)


def _transpose(b: np.ndarray) -> np.ndarray:
    return b.transpose(0, 2, 1, 3)


# The dihedral group of the square (dermoscopy has no "up"): identity, flips, 180 degrees, then the
# transposed versions (90- and 270-degree turns and the two diagonal mirrors).
_VARIANTS = (
    lambda b: b,
    lambda b: b[:, :, ::-1, :],
    lambda b: b[:, ::-1, :, :],
    lambda b: b[:, ::-1, ::-1, :],
    lambda b: _transpose(b),
    lambda b: _transpose(b)[:, :, ::-1, :],
    lambda b: _transpose(b)[:, ::-1, :, :],
    lambda b: _transpose(b)[:, ::-1, ::-1, :],
)
assert len(_VARIANTS) == N_VARIANTS


def activation_cache_key(config: FitConfig, spec: ImageSpec, train_ids: list[str], val_ids: list[str]) -> str:
    """What the frozen-bottom activations depend on: backbone, weights, input, preprocessing, split point,
    variants and the images in order (and the seed, only when ``cache_augment`` draws random augmentations)."""
    import hashlib
    import json

    key = {
        "backbone": config.backbone,
        "weights": config.weights,
        "image_spec": spec.to_dict(),
        "top_blocks": config.top_blocks,
        "cache_variants": config.cache_variants,
        "cache_augment": config.cache_augment,
        "seed": config.seed if config.cache_augment else None,
        "train": train_ids,
        "val": val_ids,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _activation_cache(
    cached,
    train_px: np.ndarray,
    val_px: np.ndarray,
    spec: ImageSpec,
    config: FitConfig,
    key: str | None = None,
) -> dict:
    """Frozen-bottom activations, fp16: train (variants, N, h, w, c) under flips (and, with ``cache_augment``,
    the random augmentations for every variant but the first), validation (N, h, w, c) as they are.

    With ``config.activation_cache`` and ``key`` (:func:`activation_cache_key`) they are loaded from
    ``DIR/KEY/`` when an earlier run saved them there, and saved there otherwise."""
    folder = Path(config.activation_cache) / key if config.activation_cache and key else None
    if folder is not None and (folder / "val.npy").exists():
        out = {"train": np.load(folder / "train.npy"), "val": np.load(folder / "val.npy")}
        log.info(
            "activation cache: loaded %s (train %s, validation %s)",
            folder,
            out["train"].shape,
            out["val"].shape,
        )
        return out
    out = _compute_activations(cached, train_px, val_px, spec, config)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("train", "val"):  # val.npy last: its presence means the pair is complete
            partial = folder / f"{name}.partial.npy"
            np.save(partial, out[name])
            partial.replace(folder / f"{name}.npy")
        log.info("activation cache: saved to %s", folder)
    return out


def _compute_activations(
    cached, train_px: np.ndarray, val_px: np.ndarray, spec: ImageSpec, config: FitConfig
) -> dict:
    from tqdm import tqdm

    augment = None
    if config.cache_augment:
        from training.model import augmentation

        augment = augmentation(backbone_info(config.backbone).normalisation, seed=config.seed)
    bottom = cached[0]
    shape = tuple(int(d) for d in bottom.output.shape[1:])
    n_variants = max(1, min(config.cache_variants, len(_VARIANTS)))
    train = np.zeros((n_variants, len(train_px), *shape), np.float16)
    val = np.zeros((len(val_px), *shape), np.float16)
    batch = config.head_batch
    jobs = [(v, train_px, train[v]) for v in range(n_variants)] + [(0, val_px, val)]
    with tqdm(total=sum(len(j[1]) for j in jobs), desc="activation cache", unit="img", mininterval=10) as bar:
        for variant, pixels, target in jobs:
            for start in range(0, len(pixels), batch):
                x = _VARIANTS[variant](data_mod.normalised(pixels[start : start + batch], spec))
                if augment is not None and variant > 0:  # validation is always variant 0, as it is
                    x = np.asarray(augment(np.ascontiguousarray(x), training=True), dtype=np.float32)
                target[start : start + batch] = np.asarray(bottom.predict_on_batch(np.ascontiguousarray(x)))
                bar.update(len(x))
    log.info(
        "activation cache: train %s, validation %s (%.0f MB)",
        train.shape,
        val.shape,
        (train.nbytes + val.nbytes) / 1e6,
    )
    return {"train": train, "val": val}


def _top_features(top, activations: np.ndarray, batch: int) -> np.ndarray:
    out = [
        np.asarray(top.predict_on_batch(activations[i : i + batch].astype(np.float32)), np.float32)
        for i in range(0, len(activations), batch)
    ]
    return np.concatenate(out)


class _CachedBatches:
    @staticmethod
    def make(
        cache: np.ndarray,
        metadata: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | None,
        batch_size: int,
        *,
        seed: int,
        mixup: float = 0.0,
        metadata_dropout: float = 0.0,
    ):
        import keras

        n_variants, n = cache.shape[0], cache.shape[1]

        class Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.rng = np.random.default_rng(seed)
                self.order = np.arange(n)
                self.variant = np.zeros(n, np.int64)
                self.shuffle = weights is not None
                self.on_epoch_end()

            def __len__(self) -> int:
                return data_mod.batches(n, batch_size)

            def __getitem__(self, index: int):
                rows = np.sort(self.order[index * batch_size : (index + 1) * batch_size])
                meta = metadata[rows]
                if metadata_dropout > 0 and self.shuffle:
                    meta = data_mod.drop_metadata(meta, metadata_dropout, self.rng)
                x = (cache[self.variant[rows], rows].astype(np.float32), meta)
                y, w = labels[rows], None if weights is None else weights[rows]
                if mixup > 0 and self.shuffle:
                    x, y, w = _mixup(x, y, w, self.rng, mixup)
                return (x, y) if w is None else (x, y, w)

            def on_epoch_end(self) -> None:
                if self.shuffle:
                    self.rng.shuffle(self.order)
                    self.variant = self.rng.integers(0, n_variants, n)

        return Batches()

"""Training throughput: the two CPU phases of ``training.fit`` against plain ``model.fit`` on the same data, in
the same run.

Rows (images per second, higher is better):
  * frozen_forward      - caching pass: frozen bottom of the backbone, inference only (phase 1/2 input)
  * head_on_features    - phase 1: head trained on cached pooled features
  * finetune_cached     - phase 2: top blocks + head trained on cached activations (flip variants)
  * plain_fit_frozen    - baseline: model.fit on pixels with the backbone frozen (what phase 1 replaces)
  * plain_fit_top       - baseline: model.fit on pixels with the same top blocks trainable (what phase 2 replaces)

    .venv/bin/python benchmarks/training.py [--backbone efficientnet_lite0] [--images 128] [--steps 6]

Uses the first N images of ../shared/data/derm (or generated images when it is absent). Prints a table and,
on its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "derm" / "labels.csv"


def _pixels(n: int, size: int, spec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from inference.preprocessing import MetadataSpec
    from training import data as data_mod

    if DATA.is_file():
        dataset = data_mod.load_dataset(DATA, check_images=False)
        dataset = dataset.subset(range(min(n, len(dataset.records))))
        return (
            data_mod.image_cache(dataset, spec),
            data_mod.metadata_matrix(dataset),
            dataset.labels.astype(np.float32),
        )
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
        np.zeros((n, MetadataSpec().size), np.float32),
        (np.arange(n) % 2).astype(np.float32),
    )


def _rate(images: int, seconds: float) -> float:
    return round(images / seconds, 1) if seconds > 0 else float("nan")


def _timed_fit(model, inputs, meta, labels, b: int, n_steps: int) -> float:
    """Images/s of ``model.fit`` over ``n_steps`` batches, after one untimed batch (tracing)."""
    model.fit([inputs[:b], meta[:b]], labels[:b], batch_size=b, epochs=1, verbose=0)
    n = n_steps * b
    t = time.perf_counter()
    model.fit([inputs[:n], meta[:n]], labels[:n], batch_size=b, epochs=1, verbose=0, shuffle=False)
    return _rate(n, time.perf_counter() - t)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--steps", type=int, default=6, help="timed training steps per row (after one warm-up)"
    )
    parser.add_argument("--top-blocks", type=int, default=5)
    args = parser.parse_args()

    import keras

    from inference.preprocessing import MetadataSpec
    from training import data as data_mod
    from training.backbones import backbone_info, split_lite, trainable_top
    from training.fit import _VARIANTS
    from training.model import build_dual_model

    keras.utils.set_random_seed(0)
    info = backbone_info(args.backbone)
    from inference.preprocessing import ImageSpec

    spec = ImageSpec(info.native_size, "squash", info.normalisation)
    pixels, meta, labels = _pixels(args.images, spec.size, spec)
    x = data_mod.normalised(pixels, spec)
    b = args.batch_size
    n_steps = min(args.steps, len(x) // b - 1)
    dual = build_dual_model(args.backbone, metadata_size=MetadataSpec().size, weights="imagenet")
    starts = [i for i, layer in enumerate(dual.backbone.layers) if layer.name.endswith("_dwconv")]
    bottom, top = split_lite(dual.backbone, len(starts) - args.top_blocks)
    results: dict[str, float] = {}

    # Frozen forward (caching pass).
    bottom.predict_on_batch(x[:b])
    t = time.perf_counter()
    acts = np.concatenate([np.asarray(bottom.predict_on_batch(x[i : i + b])) for i in range(0, len(x), b)])
    results["frozen_forward"] = _rate(len(x), time.perf_counter() - t)
    features = np.concatenate(
        [np.asarray(top.predict_on_batch(acts[i : i + b])) for i in range(0, len(x), b)]
    )

    # Phase 1: head on cached features.
    dual.head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    dual.head.train_on_batch([features[:b], meta[:b]], labels[:b])
    reps = 20
    t = time.perf_counter()
    for r in range(reps):
        i = (r * b) % (len(x) - b)
        dual.head.train_on_batch([features[i : i + b], meta[i : i + b]], labels[i : i + b])
    results["head_on_features"] = _rate(reps * b, time.perf_counter() - t)

    # Baseline: plain model.fit on pixels, backbone frozen.
    dual.backbone.trainable = False
    dual.train_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    results["plain_fit_frozen"] = _timed_fit(dual.train_model, x, meta, labels, b, n_steps)

    # Phase 2: top blocks on cached activations (flip variants) vs plain model.fit with the same blocks trainable.
    trainable_top(dual.backbone, args.top_blocks)
    act_in = keras.Input(shape=tuple(top.input.shape[1:]))
    meta_in = keras.Input(shape=(meta.shape[1],))
    trainer = keras.Model([act_in, meta_in], dual.head([top(act_in), meta_in]))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    flipped = np.concatenate(
        [np.asarray(bottom.predict_on_batch(_VARIANTS[1](x[i : i + b]))) for i in range(0, len(x), b)]
    )
    cache = np.stack([acts, flipped]).astype(np.float16)
    rng = np.random.default_rng(0)
    variant = rng.integers(0, 2, len(x))
    rows = np.arange(len(x))
    batch = cache[variant[rows], rows].astype(np.float32)
    results["finetune_cached"] = _timed_fit(trainer, batch, meta, labels, b, n_steps)

    dual.train_model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    results["plain_fit_top"] = _timed_fit(dual.train_model, x, meta, labels, b, n_steps)

    print(
        f"{args.backbone} @ {spec.size}px, batch {b}, {n_steps} timed steps, top {args.top_blocks} blocks, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'row':<22}{'images/s':>10}")
    for key, value in results.items():
        print(f"{key:<22}{value:>10}")
    summary = {
        "backbone": args.backbone,
        "image_size": spec.size,
        "batch_size": b,
        **{f"{k}_images_per_s": v for k, v in results.items()},
        "speedup_head_vs_plain_frozen": round(results["head_on_features"] / results["plain_fit_frozen"], 1),
        "speedup_finetune_vs_plain_top": round(results["finetune_cached"] / results["plain_fit_top"], 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

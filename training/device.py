"""One ensemble member trained on a lent accelerator machine in one device call (``scripts/device_train.sh``).

Such a machine has PyTorch but no TensorFlow and no network, and a call brings at most 64 MiB and returns at most
eight files of 16 MiB. So the member trains with ``KERAS_BACKEND=torch`` (keras, namex and optree travel as
wheels), its images come as an image cache (``python -m training cache-images``), the ImageNet weights as an fp16
``.npz`` (``backbones.save_lite_state``), and the trained weights go back as fp16 ``.npz`` + ``.json``
(``training.ensemble``), which ``python -m training.ensemble import`` turns into a TensorFlow-backend run folder
here for ONNX export and packaging.

    python -m training.device plan --cache .cache/images/lite0-224 --member lite0a    # here: calls, carry, sizes
    python -m training.device check --cache DIR                                       # there: parts, GPU
    python -m training.device train --cache DIR --member lite0a --out $OUT [--minutes 8.5]  # there

The recipe (``train``): the seven-diagnosis head (served as P(malignant)), then the whole backbone fine-tuned on
pixels with the full augmentation (flips, rotation, zoom, brightness, contrast) at the cache's input size, mixed
precision, batch 64, a cosine learning rate over as many epochs as fit in the time budget, validation after every
epoch, the best epoch kept; metadata dropout 0.3 (issue #16: no age blind spot).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WHEELS = Path(".whl")
WEIGHTS_DIR = Path(".device/weights")


def _recipe(name: str):
    from training.ensemble import DEFAULT_MEMBERS

    found = [m for m in DEFAULT_MEMBERS if m.name == name]
    if not found:
        raise ValueError(
            f"unknown member {name!r}; choose one of {', '.join(m.name for m in DEFAULT_MEMBERS)}"
        )
    return found[0]


def _variant(backbone: str) -> str:
    return backbone.removeprefix("efficientnet_")


def fit_config(args, cache) -> object:
    """The ``FitConfig`` of a device run (see the module docstring)."""
    from training.fit import FitConfig

    recipe = _recipe(args.member)
    weights = args.weights or str(WEIGHTS_DIR / f"{_variant(recipe.backbone)}.npz")
    return FitConfig(
        data=cache.data if len(cache.data) > 1 else cache.data[0],
        run_dir=str(Path(args.runs) / args.member),
        cache=str(args.cache),
        backbone=recipe.backbone,
        weights=None if weights == "none" else weights,
        image_size=args.image_size or cache.index["image_spec"]["image_size"],
        colour=cache.index["image_spec"]["colour"],
        seed=args.seed if args.seed is not None else recipe.seed,
        supervision="diagnosis",
        head_epochs=args.head_epochs,
        head_lr=1e-3,
        head_batch=args.head_batch,
        finetune_epochs=args.max_epochs,
        finetune_lr=args.lr,
        top_blocks=-1,
        finetune_mode="pixels",
        lr_schedule="cosine",
        metadata_dropout=args.metadata_dropout,
        batch_size=args.batch_size,
        patience=args.max_epochs,  # no early stop: the cosine schedule runs to its end within the budget
        mixed_precision=args.precision,
        max_minutes=args.minutes,
        epochs_from_budget=True,
        steps_per_epoch=args.steps_per_epoch,
        limit=args.limit,
        workers=args.workers,
    )


def environment() -> dict:
    """What the machine offers (recorded with every run)."""
    from PIL import features

    info: dict = {
        "python": sys.version.split()[0],
        "keras_backend": os.environ.get("KERAS_BACKEND"),
        "pillow_webp": features.check("webp"),  # a WebP cache needs it
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
    try:
        import keras

        info["keras"] = keras.__version__
    except ImportError:
        info["keras"] = None
    return info


def train(args) -> int:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    from training.cache import ImageCache
    from training.ensemble import export_member_weights
    from training.fit import fit

    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = ImageCache(args.cache)
    cache.check()  # fail in seconds, not after the budget, when a part did not arrive
    env = environment()
    try:
        import torch

        torch.backends.cudnn.benchmark = True  # one input size: let cuDNN pick its fastest kernels once
    except ImportError:
        pass
    config = fit_config(args, cache)
    run_dir = Path(config.run_dir)
    resume = (run_dir / "config.json").is_file()  # a second call on a warm machine continues the run
    interrupted = False
    try:
        summary = fit(config, resume=resume)
    except KeyboardInterrupt:  # the shell's timeout: bring back the best epoch so far
        interrupted, summary = True, {}
    weights_file = "model.weights.h5" if not interrupted else "finetune_best.weights.h5"
    files = []
    if (run_dir / weights_file).is_file():  # none yet when the time ran out before fine-tuning began
        files = export_member_weights(run_dir, out, args.member, weights_file=weights_file)
    if (run_dir / "val_predictions.npz").is_file():
        (out / f"{args.member}.val_predictions.npz").write_bytes(
            (run_dir / "val_predictions.npz").read_bytes()
        )
    state = json.loads((run_dir / "state.json").read_text()) if (run_dir / "state.json").is_file() else {}
    record = {
        "member": args.member,
        "environment": env,
        "interrupted": interrupted,
        "resumed": resume,
        "cache": {k: v for k, v in cache.index.items() if k not in ("images", "bad_rows", "parts")},
        "config": json.loads((run_dir / "config.json").read_text()),
        "timings": summary.get("timings"),
        "best_validation_auc": state.get("finetune_best"),
        "head_best_validation_auc": state.get("head_best"),
        "finetune_epochs_run": state.get("finetune_epoch"),
        "finetune_epoch_seconds": state.get("finetune_epoch_seconds"),
        "head_epoch_seconds": state.get("head_epoch_seconds"),
        "fit_s": summary.get("total_s"),
        "call_s": round(time.monotonic() - started, 1),
        "files": [p.name for p in files],
    }
    (out / "device.json").write_text(json.dumps(record, indent=1))
    if (run_dir / "log.txt").is_file():
        (out / f"{args.member}.log").write_text((run_dir / "log.txt").read_text()[-2_000_000:])
    print(
        json.dumps({k: record[k] for k in ("member", "best_validation_auc", "finetune_epochs_run", "call_s")})
    )
    return 3 if interrupted else 0


def check(args) -> int:
    """The quick look a transfer call makes: which parts are there, what the machine offers."""
    from training.cache import ImageCache

    report = {"environment": environment(), "caches": {}}
    for folder in args.cache:
        try:
            cache = ImageCache(folder)
            report["caches"][folder] = {"missing": cache.missing_parts(), "parts": len(cache.index["parts"])}
        except ValueError as exc:
            report["caches"][folder] = {"error": str(exc)}
    print(json.dumps(report))
    complete = all(not c.get("error") and not c["missing"] for c in report["caches"].values())
    return 0 if complete else 4


# ---------------------------------------------------------------- here: what the calls carry


def _tree_bytes(root: Path) -> tuple[int, list[tuple[int, str]]]:
    """Bytes of what a call sends besides ``carry``: tracked files present plus untracked files git does not
    ignore; and the largest of them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    sizes = []
    for name in filter(None, listed):
        path = root / name.decode()
        if path.is_file() and not path.is_symlink():
            sizes.append((path.stat().st_size, name.decode()))
    return sum(s for s, _ in sizes), sorted(sizes, reverse=True)[:5]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def plan(args) -> int:
    """The device calls that bring the cache, wheels and weights and train the member: each call's carry list and
    size; the last call trains. Parts that do not fit beside the working tree go ahead in transfer calls, made
    back to back (ignored files stay on a warm machine between calls; it is given back after 30 s idle)."""
    from training.cache import INDEX, ImageCache

    limit = int(args.call_mib * 2**20)
    root = Path.cwd()
    cache = ImageCache(args.cache)
    cache.check()
    recipe = _recipe(args.member)
    weights = Path(args.weights or WEIGHTS_DIR / f"{_variant(recipe.backbone)}.npz")
    problems = [
        f"{p} is missing (scripts/device_train.sh prepare)" for p in (WHEELS, weights) if not p.exists()
    ]
    tree, largest = _tree_bytes(root)
    folder = Path(args.cache)
    fixed = [str(WHEELS), str(weights), str(folder / INDEX)]  # the index holds the split too
    fixed_bytes = tree + sum(_size(Path(p)) for p in fixed if Path(p).exists())
    parts = [(str(folder / p["file"]), p["bytes"]) for p in cache.index["parts"]]
    calls: list[dict] = []
    room = limit - fixed_bytes
    last: list[tuple[str, int]] = []
    for path, size in reversed(parts):  # the training call takes what fits beside wheels and weights
        if size <= room and len(fixed) + len(last) < 8:
            last.append((path, size))
            room -= size
    ahead = [p for p in parts if p not in last]
    # transfer calls carry the index too, so that `check` there can say which parts have arrived
    base = tree + _size(folder / INDEX)
    batch: list[tuple[str, int]] = [(str(folder / INDEX), 0)]
    for path, size in ahead:
        if len(batch) > 1 and (base + sum(s for _, s in batch) + size > limit or len(batch) == 8):
            calls.append({"carry": [p for p, _ in batch], "bytes": base + sum(s for _, s in batch)})
            batch = [(str(folder / INDEX), 0)]
        if base + size > limit:
            problems.append(f"{path} ({size / 2**20:.1f} MiB) does not fit in a call beside the tree")
        batch.append((path, size))
    if len(batch) > 1:
        calls.append({"carry": [p for p, _ in batch], "bytes": base + sum(s for _, s in batch)})
    for call in calls:
        call["command"] = f"bash scripts/device_train.sh check --cache {folder}"
        call["timeout_s"] = 120
    command = (
        f"bash scripts/device_train.sh train --cache {folder} --member {args.member} --minutes {args.minutes}"
    )
    calls.append(
        {
            "carry": fixed + [p for p, _ in reversed(last)],
            "bytes": fixed_bytes + sum(s for _, s in last),
            "command": command,
            "timeout_s": 600,
        }
    )
    if args.minutes * 60 + 65 > 600:
        problems.append(
            f"--minutes {args.minutes:g} leaves no room in a command's 600 s (pip, imports, export)"
        )
    if fixed_bytes > limit:
        problems.append(
            f"the working tree ({tree / 2**20:.1f} MiB), wheels and weights pass {args.call_mib:g} MiB; largest: "
            + ", ".join(f"{n} ({s / 2**20:.1f} MiB)" for s, n in largest)
            + ": move them out first (scripts/device_train.sh aside)"
        )
    result = {
        "tree_mib": round(tree / 2**20, 2),
        "cache_mib": round(sum(s for _, s in parts) / 2**20, 2),
        "calls": [
            {**{k: v for k, v in c.items() if k != "bytes"}, "mib": round(c["bytes"] / 2**20, 2)}
            for c in calls
        ],
        "problems": problems,
    }
    print(json.dumps(result, indent=1))
    return 2 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.device",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one member from an image cache (on the device machine)")
    p.add_argument("--cache", required=True, help="image cache folder (cache-images)")
    p.add_argument("--member", default="lite0a", help="recipe name from training.ensemble (default lite0a)")
    p.add_argument("--out", required=True, help="folder for the weights, record and log ($OUT there)")
    p.add_argument("--runs", default="runs/device", help="run folders (default runs/device)")
    p.add_argument(
        "--minutes",
        type=float,
        default=8.5,
        help="budget of the whole fit in minutes (default 8.5: a command runs 600 s)",
    )
    p.add_argument("--weights", help="ImageNet weights .npz (default .device/weights/<variant>.npz), or none")
    p.add_argument("--image-size", type=int, help="default: the cache's")
    p.add_argument("--seed", type=int, help="default: the recipe's")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4, help="fine-tuning learning rate at the cosine's top")
    p.add_argument("--head-epochs", type=int, default=10)
    p.add_argument(
        "--head-batch", type=int, default=256, help="batch of the frozen feature pass and the head"
    )
    p.add_argument("--max-epochs", type=int, default=200, help="upper bound on fine-tuning epochs")
    p.add_argument("--metadata-dropout", type=float, default=0.3)
    p.add_argument("--precision", default="auto", help="auto, off, float16 or bfloat16")
    p.add_argument("--workers", type=int, default=8, help="batch-preparing threads")
    p.add_argument("--steps-per-epoch", type=int, help="(tests and probes)")
    p.add_argument("--limit", type=int, help="first N images only (tests and probes)")
    p = sub.add_parser("check", help="which cache parts are on this machine; torch, GPU")
    p.add_argument("--cache", action="append", required=True)
    p = sub.add_parser("plan", help="here: the device calls (carry lists, sizes, commands) for one member")
    p.add_argument("--cache", required=True)
    p.add_argument("--member", default="lite0a")
    p.add_argument("--weights", help="default .device/weights/<variant>.npz")
    p.add_argument("--minutes", type=float, default=8.5)
    p.add_argument(
        "--call-mib",
        type=float,
        default=63.0,
        help="what one call may carry in all (default 63: 64 less a margin)",
    )
    args = parser.parse_args(argv)
    from training.data import DatasetError

    try:
        return {"train": train, "check": check, "plan": plan}[args.command](args)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

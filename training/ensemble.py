"""Train the default ensemble's members one after another under one time budget, and move trained weights between
machines as small fp16 ``.npz`` files (a lent GPU machine has PyTorch but no TensorFlow: a member trains there
with ``KERAS_BACKEND=torch``, see ``training.device``, and is imported here into the TensorFlow-backend model for
ONNX export). A member whose weights pass 15 MiB travels as ``NAME.part1.npz``, ``NAME.part2.npz``, ...

    python -m training.ensemble train --data DATA/labels.csv --split models/default/training/split.json \
        --runs runs/ensemble --out OUT --minutes 60
    python -m training.ensemble import OUT/lite0a.npz OUT/lite0a.json --run-dir runs/default/lite0a [--data CSV]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class MemberRecipe:
    """How one member of the default ensemble is trained (the options that differ between members)."""

    name: str
    backbone: str
    image_size: int
    seed: int
    top_blocks: int  # fine-tuned on CPU on cached activations (stages 4-7)
    colour: str = "none"


# The members of models/default. All are trained on the seven diagnoses (served as P(malignant)) with 8 dihedral
# variants; see docs/training.md for the commands and what each choice bought.
DEFAULT_MEMBERS: tuple[MemberRecipe, ...] = (
    MemberRecipe("lite0a", "efficientnet_lite0", 224, 4, 11),
    MemberRecipe("lite0b", "efficientnet_lite0", 224, 8, 11),
    MemberRecipe("lite0c", "efficientnet_lite0", 224, 9, 11),
    MemberRecipe("lite2", "efficientnet_lite2", 260, 6, 14),
)


# A file that comes back from a device call may have 16 MiB; weights are split into files below this.
PART_BYTES = 15 * 2**20


def export_member_weights(
    run_dir: Path, out: Path, name: str, *, weights_file: str = "model.weights.h5"
) -> list[Path]:
    """Write ``name.npz`` (fp16 weights, in model order; ``name.part1.npz``, ``name.part2.npz``, ... when they
    pass 15 MiB) and ``name.json`` (config, summary, state, histories, split, log). Returns the files."""
    from training.fit import load_member

    model, config, _ = load_member(run_dir, weights_file=weights_file)
    chunks: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for i, w in enumerate(model.get_weights()):
        array = w.astype(np.float16)
        if chunks[-1] and size + array.nbytes > PART_BYTES:
            chunks.append({})
            size = 0
        chunks[-1][f"w{i:04d}"] = array
        size += array.nbytes
    names = [f"{name}.npz"] if len(chunks) == 1 else [f"{name}.part{n + 1}.npz" for n in range(len(chunks))]
    for file, chunk in zip(names, chunks, strict=True):
        np.savez_compressed(out / file, **chunk)

    def text(file: str) -> str | None:
        return (run_dir / file).read_text() if (run_dir / file).is_file() else None

    record = {
        "config": asdict(config),
        "weights_file": weights_file,
        "summary": json.loads(text("summary.json") or "{}"),
        "state": json.loads(text("state.json") or "{}"),
        "histories": {p.stem: p.read_text() for p in sorted(run_dir.glob("history_*.csv"))},
        "split": json.loads(text("split.json") or "null"),
        "log": (text("log.txt") or "")[-20000:],
    }
    (out / f"{name}.json").write_text(json.dumps(record, indent=1))
    return [out / file for file in names] + [out / f"{name}.json"]


def import_member_weights(
    npz: Path | list[Path], record_path: Path, run_dir: Path, *, data: str | None = None
) -> Path:
    """Recreate a run folder (config, split, histories, model.weights.h5) from an exported member (one
    ``.npz`` or its ``.partN.npz`` files)."""
    from training.fit import FitConfig, member_model

    record = json.loads(Path(record_path).read_text())
    config = FitConfig.from_dict(
        {**record["config"], "run_dir": str(run_dir), **({"data": data} if data else {})}
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    model = member_model(config)
    arrays: dict[str, np.ndarray] = {}
    for path in [npz] if isinstance(npz, str | Path) else npz:
        with np.load(path) as part:
            arrays.update({k: part[k].astype(np.float32) for k in part.files})
    expected = len(model.get_weights())
    if sorted(arrays) != [f"w{i:04d}" for i in range(expected)]:
        raise ValueError(
            f"the weight files hold {len(arrays)} arrays, the member needs {expected} w0000..w{expected - 1:04d}:"
            " give every .partN.npz of the member"
        )
    model.set_weights([arrays[k] for k in sorted(arrays)])
    model.save_weights(str(run_dir / "model.weights.h5"))
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    (run_dir / "summary.json").write_text(json.dumps(record["summary"], indent=2))
    (run_dir / "state.json").write_text(json.dumps(record["state"]))
    (run_dir / "log.txt").write_text(record["log"])
    for stem, text in record["histories"].items():
        (run_dir / f"{stem}.csv").write_text(text)
    if record.get("split"):  # the split the member was trained on (an image cache carries its own)
        (run_dir / "split.json").write_text(json.dumps(record["split"]))
    elif config.split:
        (run_dir / "split.json").write_text(Path(config.split).read_text())
    return run_dir


def train_members(
    *,
    data: str,
    split: str,
    runs: Path,
    out: Path,
    minutes: float,
    members: list[str],
    image_size: int | None = None,
    limit: int | None = None,
    finetune_epochs: int = 16,
    head_epochs: int = 15,
    steps_per_epoch: int | None = None,
    batch_size: int = 64,
    weights_dir: Path | None = None,
    all_blocks: bool = False,
    finetune_lr: float = 2e-4,
    patience: int = 4,
    supervision: str = "diagnosis",
    cache_variants: int = 8,
    lr_schedule: str = "plateau",
) -> list[dict]:
    import keras

    from training.fit import FitConfig, fit

    deadline = time.monotonic() + minutes * 60
    chosen = [m for m in DEFAULT_MEMBERS if m.name in members]
    results = []
    for position, recipe in enumerate(chosen):
        name = recipe.name
        left = len(chosen) - position
        budget = max(0.5, (deadline - time.monotonic()) / 60 / left)
        config = FitConfig(
            data=data,
            run_dir=str(runs / name),
            backbone=recipe.backbone,
            weights=str(weights_dir / f"{name}.npz") if weights_dir else "imagenet",
            image_size=image_size or recipe.image_size,
            colour=recipe.colour,
            split=split,
            seed=recipe.seed,
            limit=limit,
            head_epochs=head_epochs,
            head_lr=1e-3,
            head_batch=128,
            finetune_epochs=finetune_epochs,
            finetune_lr=finetune_lr,
            top_blocks=-1 if all_blocks else recipe.top_blocks,
            supervision=supervision,
            cache_variants=cache_variants,
            lr_schedule=lr_schedule,
            batch_size=batch_size,
            patience=patience,
            steps_per_epoch=steps_per_epoch,
            max_minutes=budget * 0.92,
            workers=4,
        )
        summary = fit(config, resume=(runs / name / "config.json").exists())
        export_member_weights(runs / name, out, name)
        results.append(summary)
        print(
            json.dumps({"member": name, "best": summary["best_finetune"], "total_s": summary["total_s"]}),
            flush=True,
        )
        keras.backend.clear_session()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.ensemble",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the default members under one time budget")
    train.add_argument(
        "--data", required=True, action="append", help="labels CSV (repeat for several, or a .txt list file)"
    )
    train.add_argument("--split", required=True)
    train.add_argument("--runs", type=Path, default=Path("runs/ensemble"))
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--minutes", type=float, default=60.0)
    train.add_argument("--members", default=",".join(m.name for m in DEFAULT_MEMBERS))
    train.add_argument("--image-size", type=int)
    train.add_argument("--limit", type=int)
    train.add_argument("--finetune-epochs", type=int, default=16)
    train.add_argument("--head-epochs", type=int, default=15)
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--finetune-lr", type=float, default=2e-4)
    train.add_argument("--patience", type=int, default=4)
    train.add_argument("--supervision", choices=("malignant", "diagnosis"), default="diagnosis")
    train.add_argument("--cache-variants", type=int, default=8)
    train.add_argument("--lr-schedule", choices=("plateau", "cosine"), default="plateau")
    train.add_argument(
        "--all-blocks", action="store_true", help="fine-tune the whole backbone on pixels (GPU)"
    )
    train.add_argument(
        "--weights-dir", type=Path, help="liteN.npz ImageNet weights (see backbones.save_lite_state)"
    )
    imp = sub.add_parser("import", help="rebuild a run folder from an exported member (npz + json)")
    imp.add_argument("files", type=Path, nargs="+", help="NAME.npz (or every NAME.partN.npz), then NAME.json")
    imp.add_argument("--run-dir", type=Path, required=True)
    imp.add_argument("--data")
    args = parser.parse_args(argv)
    if args.command == "train":
        args.out.mkdir(parents=True, exist_ok=True)
        train_members(
            data=args.data[0] if len(args.data) == 1 else args.data,
            split=args.split,
            runs=args.runs,
            out=args.out,
            minutes=args.minutes,
            members=args.members.split(","),
            image_size=args.image_size,
            limit=args.limit,
            finetune_epochs=args.finetune_epochs,
            head_epochs=args.head_epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            weights_dir=args.weights_dir,
            all_blocks=args.all_blocks,
            finetune_lr=args.finetune_lr,
            patience=args.patience,
            supervision=args.supervision,
            cache_variants=args.cache_variants,
            lr_schedule=args.lr_schedule,
        )
    else:
        *npz, record = args.files
        if not npz or record.suffix != ".json" or any(p.suffix != ".npz" for p in npz):
            parser.error("import takes NAME.npz (or its .partN.npz files) and then NAME.json")
        try:
            print(import_member_weights(npz, record, args.run_dir, data=args.data))
        except (ValueError, FileNotFoundError) as exc:  # a missing part, a file of another member
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

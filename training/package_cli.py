"""``python -m training package``: export members (or reuse a package's), choose the threshold, write the
package. Split from ``training/__main__.py`` to keep files small; ``training.__main__`` wires it in."""

from __future__ import annotations

import json
from pathlib import Path


def data_arg(values: list[str] | None) -> str | list[str] | None:
    """``--data`` given once stays a string (as in existing run configs); several times, a list."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def add_package_parser(sub) -> None:
    p = sub.add_parser(
        "package", help="export members, choose the threshold on validation, write the package"
    )
    p.add_argument("--member", action="append", help="NAME=RUN_DIR (repeat per member)")
    p.add_argument(
        "--from-package",
        help="reuse an existing package's members (folder, .zip or 'active'), byte for byte: choose its "
        "threshold again on --split and write a new package (give it a new --version); with --member, runs "
        "are exported and added to them, with --drop-member some are left out",
    )
    p.add_argument(
        "--drop-member",
        action="append",
        help="with --from-package: leave out this member of that package (repeatable); --member adds runs",
    )
    p.add_argument("--out", required=True, help="package folder")
    p.add_argument("--name", help="package name (default: teleder-derm, or the --from-package one's)")
    p.add_argument("--version", help="package version (default: 1.0.0; required with --from-package)")
    p.add_argument(
        "--data",
        action="append",
        help="labels CSV, repeatable, or a .txt list file (default: the first run's)",
    )
    p.add_argument("--split", help="split.json with the validation side (default: the first run's)")
    p.add_argument("--target-sensitivity", type=float, default=0.95)
    p.add_argument(
        "--sensitivity-confidence",
        type=float,
        default=0.95,
        help="choose the threshold so that the exact one-sided lower confidence bound of sensitivity over the "
        "validation positives reaches --target-sensitivity at this confidence; 0 flags exactly the target "
        "share of validation positives (which new patients miss about half the time)",
    )
    p.add_argument("--no-tta", action="store_true", help="disable horizontal-flip test-time augmentation")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument(
        "--class-output",
        default="auto",
        help="the members' seven-class softmax tensor, declared as their 'classes' output for the differential: "
        "auto (found in diagnosis-supervised members), none, or a tensor name (default: auto)",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="do not fit a calibration map (the threshold is then chosen on the raw ensemble probability)",
    )
    p.add_argument(
        "--scores",
        help="reuse saved validation scores of these same members (validation_scores.npz or evaluate --out's "
        "scores.npz; needs image_id and raw_probability or probability) instead of running them",
    )
    p.add_argument(
        "--card-section",
        action="append",
        help="a Markdown file printed as a model card section (first line: its title); repeatable",
    )
    p.add_argument(
        "--allow-subgroup-shortfall",
        action="store_true",
        help="write the package even when the threshold keeps sensitivity below 0.90 in an age band or source "
        "with >= 30 malignant validation images (refused by default; the model card records it)",
    )
    p.add_argument(
        "--balance-differential",
        action="store_true",
        help="store class weights in the differential, chosen on validation for the balanced multiclass "
        "accuracy (rare diagnoses the image supports are named first; the risk is unchanged)",
    )
    p.add_argument(
        "--lower-threshold-for-subgroups",
        action="store_true",
        help="instead of refusing, lower the threshold until every age band and source with >= 30 malignant "
        "validation images keeps sensitivity >= 0.90 (more benign lesions flagged; the model card says which "
        "groups needed it and the threshold before)",
    )


def _recipe(config: dict) -> str:
    """One line on how a member was trained, for the model card."""
    supervision = (
        "7 diagnoses -> P(malignant)" if config.get("supervision") == "diagnosis" else config["task"]
    )
    blocks = config.get("top_blocks")
    tuned = "whole backbone" if blocks is not None and blocks < 0 else f"top {blocks} blocks"
    mode = config.get("finetune_mode", "cached")
    if mode == "cached":
        variants = f"{config.get('cache_variants', 3)} cached variants"
        mode = variants + (" (augmented)" if config.get("cache_augment") else "")
    if config.get("train_batchnorm"):
        mode += ", BatchNorm trained"
    if config.get("mixup"):
        mode += f", mixup {config['mixup']}"
    if (config.get("average_epochs") or 1) > 1:
        mode += f", mean of the {config['average_epochs']} best epochs"
    if config.get("lr_schedule") == "cosine":
        mode += ", cosine learning rate"
    if config.get("metadata_dropout"):
        mode += f", metadata dropout {config['metadata_dropout']}"
    return f"{supervision}; {tuned}, {mode}; lr {config.get('finetune_lr')}; seed {config.get('seed')}"


def _export_runs(items: list[str], out: Path, tolerance: float) -> list[dict]:
    """``--member NAME=RUN_DIR`` items exported to ONNX into ``out`` (with their Keras parity check)."""
    from training.export import export_member

    members = []
    for item in items:
        name, _, run = item.partition("=")
        if not name or not run:
            raise ValueError(f"--member {item!r}: expected NAME=RUN_DIR")
        result = export_member(run, out / f"{name}.onnx", tolerance=tolerance)
        summary_path = Path(run) / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        config_path = Path(run) / "config.json"
        members.append(
            {
                "recipe": _recipe(json.loads(config_path.read_text())) if config_path.exists() else None,
                "name": name,
                "onnx": result["file"],
                "image_spec": result["image_spec"],
                "output": result["output"],
                "backbone": result["backbone"],
                "run_dir": str(run),
                "parity_max_abs_diff": result["parity_max_abs_diff"],
                "training_summary": summary,
            }
        )
    return members


def cmd_package(args) -> int:
    from training.package import build_package

    if not 0.0 < args.target_sensitivity <= 1.0:
        raise ValueError(f"--target-sensitivity must be in (0, 1], got {args.target_sensitivity}")
    if not 0.0 <= args.sensitivity_confidence < 1.0:
        raise ValueError(f"--sensitivity-confidence must be in [0, 1), got {args.sensitivity_confidence}")
    if not args.member and not args.from_package:
        raise ValueError("give --member NAME=RUN_DIR (repeatable), --from-package PACKAGE, or both")
    if args.drop_member and not args.from_package:
        raise ValueError("--drop-member names a member of --from-package's package")
    if args.from_package:
        return _repackage(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    members = _export_runs(args.member, out, args.tolerance)
    differential = _declare_class_output(members, args.class_output)
    first_run = Path(args.member[0].partition("=")[2])
    split = args.split or str(first_run / "split.json")
    data = data_arg(args.data) or json.loads((first_run / "config.json").read_text())["data"]
    training = {
        "members": {m["name"]: m.pop("training_summary") for m in members},
        "data": data if isinstance(data, list) else str(data),
    }
    card = build_package(
        out,
        members,
        data=data,
        split=split,
        name=args.name or "teleder-derm",
        version=args.version or "1.0.0",
        target_sensitivity=args.target_sensitivity,
        sensitivity_confidence=args.sensitivity_confidence,
        tta=not args.no_tta,
        training=training,
        **_package_options(args, differential),
    )
    _print_package_summary(out, card)
    return 0


def _declare_class_output(members: list[dict], choice: str) -> dict | None:
    """``--class-output``: auto (declare each member's seven-class softmax when every member has one, found by
    ``training.package.find_class_output``), none, or a tensor name for every member. Returns the manifest's
    ``differential`` entry (or None) and sets each member's ``outputs``."""
    from training.package import find_class_output, ham_differential

    if choice == "none":
        for member in members:
            member.pop("outputs", None)
        return None
    if choice != "auto":
        for member in members:
            member["outputs"] = {**(member.get("outputs") or {}), "classes": choice}
        return ham_differential()
    found = [find_class_output(Path(m["onnx"]), m["output"]) for m in members]
    if not all(found):
        return None
    for member, tensor in zip(members, found, strict=True):
        member["outputs"] = {**(member.get("outputs") or {}), "classes": tensor}
    return ham_differential()


def _package_options(args, differential: dict | None) -> dict:
    from training.package import card_section

    return {
        "differential": differential,
        "calibrate": not args.no_calibration,
        "scores": args.scores,
        "allow_subgroup_shortfall": args.allow_subgroup_shortfall,
        "lower_threshold_for_subgroups": args.lower_threshold_for_subgroups,
        "balance_differential": args.balance_differential,
        "card_sections": [card_section(path) for path in args.card_section or []],
    }


def _repackage(args) -> int:
    from training.evaluate import load_package
    from training.package import build_package, members_from_package

    source, manifest = load_package(args.from_package)
    out = Path(args.out)
    if out.exists() and out.resolve() == source.resolve():
        raise ValueError("--out must be a new folder: the package being re-thresholded stays as it is")
    if not args.version or args.version == manifest.version:
        raise ValueError(f"give the new package a new --version (the source is {manifest.version})")
    members, training, tta = members_from_package(source, manifest)
    names = [m["name"] for m in members]
    unknown = sorted(set(args.drop_member or ()) - set(names))
    if unknown:
        raise ValueError(f"--drop-member {unknown[0]!r}: the package's members are {', '.join(names)}")
    members = [m for m in members if m["name"] not in set(args.drop_member or ())]
    differential = manifest.differential.to_dict() if manifest.differential else None
    if args.member:
        # Members trained since: exported next to the package's (kept byte for byte), each with its own
        # differential output found in its graph; the manifest's differential entry stays the package's.
        clash = sorted({i.partition("=")[0] for i in args.member} & {m["name"] for m in members})
        if clash:
            raise ValueError(f"--member {clash[0]!r}: the package already has a member of that name")
        out.mkdir(parents=True, exist_ok=True)
        added = _export_runs(args.member, out, args.tolerance)
        if differential is not None and _declare_class_output(added, "auto") is None:
            raise ValueError(
                "the new members have no seven-class softmax: the package's differential needs one"
            )
        training["members"] = {
            **{k: v for k, v in training.get("members", {}).items() if k in {m["name"] for m in members}},
            **{m["name"]: m.pop("training_summary") for m in added},
        }
        members += added
    if not members:
        raise ValueError("no member left: --drop-member removed them all")
    if args.class_output != "auto" or differential is None:
        differential = _declare_class_output(members, args.class_output) or (
            differential if args.class_output == "auto" else None
        )
    data = data_arg(args.data) or training.get("data")
    if not data:
        raise ValueError("--data is needed: the package does not say which CSV it was validated on")
    if not args.split:
        raise ValueError(
            "--split is needed with --from-package (the split.json whose validation side to use)"
        )
    card = build_package(
        out,
        members,
        data=data,
        split=args.split,
        name=args.name or manifest.name,
        version=args.version,
        target_sensitivity=args.target_sensitivity,
        sensitivity_confidence=args.sensitivity_confidence,
        tta=tta and not args.no_tta,
        training={**training, "data": data if isinstance(data, list) else str(data)},
        **_package_options(args, differential),
    )
    _print_package_summary(out, card)
    return 0


def _print_package_summary(out: Path, card: dict) -> None:
    v = card["validation"]
    print(
        json.dumps(
            {
                "package": str(out),
                "auc": v["auc"],
                "threshold": v["threshold"],
                "sensitivity": v["sensitivity"],
                "specificity": v["specificity"],
                "threshold_rule": card["threshold_rule"],
            }
        )
    )

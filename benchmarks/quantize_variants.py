"""Which int8 settings keep one member's answers: a measuring script behind the defaults of
``python -m training quantize`` (docs/inference.md, "int8 members").

    python benchmarks/quantize_variants.py --member lite0a --variants rr_head,u8_head,rr_head_first \
        [--package models/default] [--calibration-images 96] [--val-images 160]

For one member of a package: calibrate on training-side images of the package's split (through the shared
preprocessing, with their flips), quantize once per variant and, on validation images, compare AUC and
probabilities with the fp32 member, and time both at batch 1 and 10 (flip TTA doubles each batch) in the same
process. A variant is a ``_``-joined list of:
``rr`` 7-bit weights (reduce_range), ``u8`` uint8 weights (else int8), ``head`` head kept fp32, ``first`` first
convolution kept fp32, ``dw`` depthwise convolutions kept fp32, ``linear`` convolutions without an activation
after them (the projections) kept fp32, ``conv`` only Conv/Clip quantized, ``ma`` moving-average MinMax
calibration. ``all`` (or any unknown word) adds nothing: everything int8.
Prints one JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default=str(ROOT / "models" / "default"))
    parser.add_argument("--member", required=True)
    parser.add_argument("--variants", required=True, help="comma-separated, e.g. rr_head,u8_head")
    parser.add_argument("--data", default="/work/shared/data/derm/labels.csv")
    parser.add_argument("--calibration-images", type=int, default=96)
    parser.add_argument("--val-images", type=int, default=160)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from inference.package import read_manifest
    from inference.preprocessing import hflip
    from training.data import Split, load_dataset
    from training.evaluate import roc_auc
    from training.quantize import QuantizeConfig, _reader, calibration_tensors, plan_member

    package = Path(args.package)
    manifest, _ = read_manifest(package)
    member = next(m for m in manifest.members if m.name == args.member)
    train, val = Split.load(package / "training" / "split.json").apply(
        load_dataset(args.data, check_images=False)
    )
    rng = np.random.default_rng(0)
    cal = [train.records[i] for i in rng.choice(len(train.records), args.calibration_images, replace=False)]
    chosen = [val.records[i] for i in rng.choice(len(val.records), args.val_images, replace=False)]
    cx, cm = calibration_tensors(cal, member.image, manifest)
    vx, vm = calibration_tensors(chosen, member.image, manifest)
    labels = np.array([r.malignant for r in chosen])

    def session(path):
        options = ort.SessionOptions()
        options.enable_mem_pattern = False
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def feed(x, m):
        return {
            member.image_input: np.concatenate([x, hflip(x)]),
            member.metadata_input: np.concatenate([m, m]),
        }

    def score(s):
        out = []
        for i in range(0, len(vx), 16):
            x = vx[i : i + 16]
            p = s.run([member.output], feed(x, vm[i : i + 16]))[0][:, 0]
            out.append((p[: len(x)] + p[len(x) :]) / 2)
        return np.concatenate(out)

    def timing(s, batch, seconds=3.0):
        inputs = feed(vx[:batch], vm[:batch])
        s.run([member.output], inputs)
        samples, started = [], time.time()
        while len(samples) < 5 or time.time() - started < seconds:
            tick = time.perf_counter()
            s.run([member.output], inputs)
            samples.append(time.perf_counter() - tick)
        return float(np.median(samples))

    base = session(package / member.file)
    reference = score(base)
    print(
        json.dumps({"variant": "fp32", "auc": roc_auc(labels, reference), "val_images": len(labels)}),
        flush=True,
    )
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(package / member.file), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        for variant in args.variants.split(","):
            words = set(variant.split("_"))
            pairs = (("head", "head"), ("first", "first"), ("depthwise", "dw"), ("linear", "linear"))
            groups = tuple(g for g, w in pairs if w in words)
            plan = plan_member(model, member.image_input, [], QuantizeConfig(fp32_layers=groups))
            out = Path(scratch) / f"{variant}.onnx"
            started = time.time()
            quantize_static(
                str(prepared),
                str(out),
                _reader(member, cx, cm, tta=True, batch_size=8),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range="rr" in words,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QUInt8 if "u8" in words else QuantType.QInt8,
                nodes_to_exclude=plan.excluded,
                op_types_to_quantize=["Conv", "Clip"] if "conv" in words else None,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"CalibMovingAverage": "ma" in words},
            )
            seconds = time.time() - started
            s = session(out)
            candidate = score(s)
            diff = np.abs(candidate - reference)
            row = {
                "variant": variant,
                "quantize_s": round(seconds, 1),
                "auc": roc_auc(labels, candidate),
                "max_abs_diff": float(diff.max()),
                "mean_abs_diff": float(diff.mean()),
                "mb": round(out.stat().st_size / 1e6, 1),
            }
            for batch in (1, 10):  # interleaved: fp32 then int8, same moment of a shared machine
                fp32_s, int8_s = timing(base, batch), timing(s, batch)
                row[f"b{batch}_ms_fp32"] = round(fp32_s * 1000, 1)
                row[f"b{batch}_ms_int8"] = round(int8_s * 1000, 1)
                row[f"b{batch}_speedup"] = round(fp32_s / int8_s, 2)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

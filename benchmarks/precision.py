"""Package against package in one run (``benchmarks/inference.py --package A --package B``): fp32 against int8,
say. Used by ``benchmarks/inference.py``; not a script of its own.

For every package, in the same process and interleaved round by round so that a shared machine's load drifts
over all of them alike: raw ``Ensemble.run`` throughput at batch 1 and 10 (preprocessed tensors), and the
single-image case in process (decode, preprocess and run one JPEG, as the worker does after reading it). Then,
one package at a time in a fresh child process, the peak RSS of a process that loads the ensemble and runs a
1- and a 10-image case; and the validation AUC and sensitivity at the package threshold when the labels CSV
and the package's split are present. Ratios are against the first package.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Manifest keys (top level, or a member's ``outputs``) that add an AI output to a case's analysis, beyond the
# ensemble probability. A package that has none of them produces the probability alone.
AI_OUTPUT_KEYS = (
    "calibration",
    "differential",
    "gate",
    "ood",
    "quality",
    "heatmap",
    "references",
    "retrieval",
)


def ai_outputs(manifest) -> list[str]:
    """The AI outputs a package gives a case: "probability", then whatever its manifest declares."""
    found = ["probability"]
    raw = manifest.raw or {}
    found += [key for key in AI_OUTPUT_KEYS if raw.get(key)]
    for member in raw.get("members", []):
        for name in member.get("outputs") or {}:
            if f"member output '{name}'" not in found:
                found.append(f"member output '{name}'")
    return found


def _config():
    from inference.runtime import RuntimeConfig

    return RuntimeConfig(
        providers=tuple(
            filter(None, os.environ.get("TELEDER_ORT_PROVIDERS", "CPUExecutionProvider").split(","))
        ),
        intra_op_threads=int(os.environ.get("TELEDER_ORT_INTRA_OP_THREADS", "0")),
        inter_op_threads=int(os.environ.get("TELEDER_ORT_INTER_OP_THREADS", "1")),
    )


def interleaved_timings(packages: list[Path], images: list[bytes], *, rounds: int, seconds: float) -> dict:
    """{package index: {"b1": [s...], "b10": [s...], "case": [s...]}}, measured round-robin."""
    from inference.package import read_manifest
    from inference.runtime import Ensemble

    meta = (56, "female", "torso")
    ensembles = [Ensemble(p, read_manifest(p)[0], _config()) for p in packages]
    inputs = {}
    for k, ensemble in enumerate(ensembles):
        for batch in (1, 10):
            inputs[k, batch] = ensemble.prepare(images[:batch], [meta] * batch)
            ensemble.run(inputs[k, batch])  # first-run costs
        ensemble.predict(images[:1], [meta])
    samples = {k: {"b1": [], "b10": [], "case": []} for k in range(len(ensembles))}
    for index in range(rounds):
        for k, ensemble in enumerate(ensembles):
            for batch in (1, 10):
                started = time.perf_counter()
                while time.perf_counter() - started < seconds or not samples[k][f"b{batch}"]:
                    tick = time.perf_counter()
                    ensemble.run(inputs[k, batch])
                    samples[k][f"b{batch}"].append(time.perf_counter() - tick)
            started = time.perf_counter()
            count = 0
            while time.perf_counter() - started < seconds or count < 3:
                image = images[(index * 7 + count) % len(images)]
                tick = time.perf_counter()
                ensemble.predict([image], [meta])
                samples[k]["case"].append(time.perf_counter() - tick)
                count += 1
    return samples


def rss_probe(package: Path, images: list[bytes]) -> dict:
    """Run in a child process: load the ensemble as a worker does, analyse a 1- and a 10-image case, report the
    peak resident memory."""
    from inference.package import read_manifest
    from inference.runtime import Ensemble

    before = _vm_hwm()
    ensemble = Ensemble(package, read_manifest(package)[0], _config())
    loaded = _vm_hwm()
    for batch in (1, 10, 1, 10):
        ensemble.predict(images[:batch], [(56, "female", "torso")] * batch)
    return {"rss_start_mb": before, "rss_loaded_mb": loaded, "rss_peak_mb": _vm_hwm()}


def _vm_hwm() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_rss(package: Path, script: Path) -> dict:
    result = subprocess.run(
        [sys.executable, str(script), "--rss-probe", str(package)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    if result.returncode != 0:
        return {"rss_peak_mb": None, "note": result.stderr[-500:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def validation_metrics(package: Path, data: Path | None, limit: int | None) -> dict | None:
    """AUC and sensitivity at the package threshold on the validation side of the package's split (the
    first ``limit`` images when given), through the workers' runtime; None when the data is not here."""
    import numpy as np

    from training import evaluate as ev
    from training.data import Split, load_dataset

    split = package / "training" / "split.json"
    if data is None or not Path(data).is_file() or not split.is_file():
        return None
    folder, manifest = ev.load_package(package)
    _, val = Split.load(split).apply(load_dataset(data, check_images=False))
    if limit:
        val = val.subset(list(range(min(limit, len(val.records)))))
    scores, _ = ev.score_dataset(val, folder, manifest, progress=False)
    labels = np.array([r.malignant for r in val.records])
    metrics = ev.binary_metrics(labels, scores, manifest.threshold)
    return {
        "n": len(labels),
        "auc": metrics["auc"],
        "sensitivity": metrics["sensitivity"],
        "specificity": metrics["specificity"],
        "threshold": manifest.threshold,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def compare(
    packages: list[Path], *, quick: bool, data: Path | None, script: Path, images: list[bytes], log
) -> dict:
    """The comparison; returns {"packages": [...], "rows": [(label, value...)]} for the caller to print."""
    from inference.package import read_manifest

    manifests = [read_manifest(p)[0] for p in packages]
    rounds, seconds = (3, 1.0) if quick else (6, 2.0)
    log(f"interleaved timing: {rounds} rounds x {len(packages)} packages")
    samples = interleaved_timings(packages, images, rounds=rounds, seconds=seconds)
    results = []
    for k, (package, manifest) in enumerate(zip(packages, manifests, strict=True)):
        log(f"{manifest.label}: peak RSS in a fresh process; validation metrics")
        rss = measure_rss(package, script)
        metrics = validation_metrics(package, data, 300 if quick else None)
        s = samples[k]
        results.append(
            {
                "package": manifest.label,
                "precision": manifest.precision,
                "size_mb": round(sum((package / m.file).stat().st_size for m in manifest.members) / 1e6, 1),
                "raw_img_per_s_b1": 1 / statistics.median(s["b1"]),
                "raw_img_per_s_b10": 10 / statistics.median(s["b10"]),
                "case_p50_s": statistics.median(s["case"]),
                "case_p95_s": percentile(s["case"], 0.95),
                "case_n": len(s["case"]),
                "rss_peak_mb": rss.get("rss_peak_mb"),
                "validation": metrics,
                "ai_outputs": ai_outputs(manifest),
            }
        )
    base = results[0]
    for r in results[1:]:
        r["ratio_b1"] = r["raw_img_per_s_b1"] / base["raw_img_per_s_b1"]
        r["ratio_b10"] = r["raw_img_per_s_b10"] / base["raw_img_per_s_b10"]
        r["ratio_case_p95"] = r["case_p95_s"] / base["case_p95_s"]
    return {"results": results, "rounds": rounds, "seconds_per_sample_block": seconds}


def table(report: dict) -> list[tuple[str, str]]:
    results = report["results"]
    base = results[0]

    def row(label: str, fmt, key: str, ratio: str | None = None) -> tuple[str, str]:
        cells = []
        for r in results:
            value = r.get(key)
            cell = "n/a" if value is None else fmt(value)
            if ratio and ratio in r:
                cell += f" ({r[ratio]:.2f}x)"
            cells.append(cell)
        return label, "  |  ".join(cells)

    rows = [
        ("package", "  |  ".join(f"{r['package']} [{r['precision']}]" for r in results)),
        row("member files", lambda v: f"{v:.1f} MB", "size_mb"),
        row("raw ORT, batch 1", lambda v: f"{v:.1f} img/s", "raw_img_per_s_b1", "ratio_b1"),
        row("raw ORT, batch 10", lambda v: f"{v:.1f} img/s", "raw_img_per_s_b10", "ratio_b10"),
        row("single-image case in process, p50", lambda v: f"{v * 1000:.0f} ms", "case_p50_s"),
        row(
            "single-image case in process, p95",
            lambda v: f"{v * 1000:.0f} ms",
            "case_p95_s",
            "ratio_case_p95",
        ),
        row("peak RSS, ensemble loaded + 1/10-image cases", lambda v: f"{v:.0f} MB", "rss_peak_mb"),
    ]
    validations = [r["validation"] for r in results]
    if all(validations):
        rows.append(
            (
                f"validation AUC (n={validations[0]['n']})",
                "  |  ".join(f"{v['auc']:.4f}" for v in validations)
                + f"  (drop {validations[0]['auc'] - validations[-1]['auc']:+.4f})",
            )
        )
        rows.append(
            (
                "sensitivity / specificity at threshold",
                "  |  ".join(f"{v['sensitivity']:.4f} / {v['specificity']:.4f}" for v in validations),
            )
        )
    else:
        rows.append(("validation AUC", "n/a (labels CSV or the package's training/split.json not here)"))
    rows.append(
        ("ratios", f"against {base['package']}, same process, interleaved; absolute numbers depend on load")
    )
    return rows  # fmt: skip


def single_image_timings(package: Path, images: list[bytes]) -> list[float]:
    """Seconds per single-image case in process, probability only: decode, preprocess and run one JPEG
    (the first image pays the first-run costs and is not counted)."""
    from inference.package import read_manifest
    from inference.runtime import Ensemble

    ensemble = Ensemble(package, read_manifest(package)[0], _config())
    meta = [(56, "female", "torso")]
    ensemble.predict(images[:1], meta)
    samples = []
    for image in images[1:]:
        started = time.perf_counter()
        ensemble.predict([image], meta)
        samples.append(time.perf_counter() - started)
    return samples


def run_comparison(args, *, images: list[bytes], script: Path, log) -> int:
    """``benchmarks/inference.py --package A --package B ...``: measure, print the table and the JSON line."""
    scratch = Path(tempfile.mkdtemp(prefix="teleder-bench-"))
    try:
        packages = []
        for k, given in enumerate(args.package):
            path = Path(given).resolve()
            if path.suffix == ".zip":
                from inference.archive import extract_zip

                path = extract_zip(path, scratch / f"package{k}")
            packages.append(path)
        data = Path(args.data) if args.data else None
        report = compare(packages, quick=args.quick, data=data, script=script, images=images, log=log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = table(report)
    width = max(len(label) for label, _ in rows)
    print("TeleDerm inference benchmark: package comparison" + (" (quick)" if args.quick else ""))
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")
    print(json.dumps({"quick": args.quick, "cpu_count": os.cpu_count(), **report}))
    return 0

"""The heatmap's cost, part of ``benchmarks/inference.py`` (``--maps-only`` runs just this): a single-image
case's analysis in process (decode, preprocess, one fused session run, and for the map the PNG overlay the
worker stores) with the members' ``outputs.cam`` read against the same package with it left unread, interleaved
on the same images so that load drift on a shared machine hits both alike. Both sides compute everything else
the package declares (the differential, the gate's features)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path


def heatmap_latency(package: Path, images: list[bytes], rounds: int = 3) -> dict:
    from inference.explain import overlay_png
    from inference.package import read_manifest
    from inference.preprocessing import load_image
    from inference.runtime import CPU, Ensemble, RuntimeConfig

    manifest, _ = read_manifest(package)
    config = RuntimeConfig(providers=(CPU,))
    on = Ensemble(package, manifest, config)
    if not on.has_heatmaps:
        return {
            "maps_note": "the package has no heatmap output (python -m training add-cam): nothing to compare"
        }
    off = Ensemble(package, manifest, config, heatmaps=False)
    meta = [(56, "female", "torso")]

    def case_off(data: bytes) -> None:
        off.run(off.prepare([load_image(data)], meta))

    def case_on(data: bytes) -> None:
        image = load_image(data)
        outcomes, _ = on.run(on.prepare([image], meta))
        overlay_png(outcomes[0].heatmap, image.width, image.height)

    for data in images[:3]:  # warm-up both sessions
        case_off(data)
        case_on(data)
    with_map, without = [], []
    for _ in range(rounds):
        for data in images:
            for fn, sink in ((case_on, with_map), (case_off, without)):
                sink.append(_timed(fn, data))
    on_s, off_s = statistics.median(with_map), statistics.median(without)
    return {
        "maps_cases": len(with_map),
        "maps_on_p50_ms": round(on_s * 1000, 1),
        "maps_off_p50_ms": round(off_s * 1000, 1),
        "maps_overhead": round(on_s / off_s - 1, 4),
    }


def _timed(fn: Callable[[bytes], None], data: bytes) -> float:
    tick = time.perf_counter()
    fn(data)
    return time.perf_counter() - tick


def print_heatmaps(result: dict) -> None:
    if "maps_overhead" not in result:
        print(f"  (g) heatmaps: {result.get('maps_note')}")
        return
    print(
        f"  (g) single-image case analysis, heatmap on / off (n={result['maps_cases']} each, interleaved): "
        f"p50 {result['maps_on_p50_ms']:.0f} ms / {result['maps_off_p50_ms']:.0f} ms, "
        f"overhead {result['maps_overhead'] * 100:+.1f} %  (target <= +20 %)"
    )

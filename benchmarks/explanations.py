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

    return interleaved_overhead(case_on, case_off, images, rounds=rounds, key="maps")


def interleaved_overhead(
    case_on: Callable[[bytes], None],
    case_off: Callable[[bytes], None],
    images: list[bytes],
    *,
    rounds: int,
    key: str,
) -> dict:
    """Time ``case_on`` against ``case_off`` on the same images, interleaved (so load drifts hit both alike)
    after a warm-up of three images each; medians as ``<key>_on_p50_ms`` / ``<key>_off_p50_ms``, their ratio
    minus one as ``<key>_overhead`` and the count per side as ``<key>_cases``."""
    for data in images[:3]:  # warm-up both sessions
        case_off(data)
        case_on(data)
    timed: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for data in images:
            for on, fn in ((True, case_on), (False, case_off)):
                tick = time.perf_counter()
                fn(data)
                timed[on].append(time.perf_counter() - tick)
    on_s, off_s = statistics.median(timed[True]), statistics.median(timed[False])
    return {
        f"{key}_cases": len(timed[True]),
        f"{key}_on_p50_ms": round(on_s * 1000, 1),
        f"{key}_off_p50_ms": round(off_s * 1000, 1),
        f"{key}_overhead": round(on_s / off_s - 1, 4),
    }


def print_heatmaps(result: dict) -> None:
    if "maps_overhead" not in result:
        print(f"  (g) heatmaps: {result.get('maps_note')}")
        return
    print(
        f"  (g) single-image case analysis, heatmap on / off (n={result['maps_cases']} each, interleaved): "
        f"p50 {result['maps_on_p50_ms']:.0f} ms / {result['maps_off_p50_ms']:.0f} ms, "
        f"overhead {result['maps_overhead'] * 100:+.1f} %  (target <= +20 %)"
    )

"""Check the heatmap that ``python -m training add-cam`` writes into a member graph against a finite-difference
Grad-CAM on real images: g = dP(malignant)/d(pooled features) by central differences of the member's own head
(its Dense kernel, bias, softmax and malignant mask, in float64), map = ReLU(sum_c g_c F_c) with F the feature
map read from the same session. Prints one JSON line per member with the largest absolute difference.

    PYTHONPATH=. .venv/bin/python scripts/verify_cam.py PACKAGE [--data CSV] [--images 4] [--member NAME ...]
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.package import read_manifest  # noqa: E402
from inference.preprocessing import image_tensor, load_image, metadata_vector  # noqa: E402
from inference.sessions import expose_outputs  # noqa: E402
from training.cam import CAM_OUTPUT, find_head  # noqa: E402


def check_member(folder: Path, manifest, member, images: list[Path], step: float = 1e-4) -> dict:
    model = onnx.load(str(folder / member.file))
    head = find_head(model, member.output)
    producers = {o: n for n in model.graph.node for o in n.output}
    constants = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    activation = producers[head.probabilities]
    bias_add = producers[activation.input[0]]
    dense = producers[bias_add.input[0]]
    kernel, bias, concat = constants[dense.input[1]], constants[bias_add.input[1]], dense.input[0]
    expose_outputs(model.graph, [head.feature_map, concat])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = np.stack([image_tensor(load_image(path), member.image) for path in images]).astype(np.float32)
    meta = np.stack([metadata_vector(None, None, None, manifest.metadata)] * len(images)).astype(np.float32)
    cam, features, x = session.run([CAM_OUTPUT, head.feature_map, concat], {"image": batch, "metadata": meta})
    features, x = features.astype(np.float64), x.astype(np.float64)

    def malignant(row: np.ndarray) -> float:
        z = row @ kernel + bias
        if head.activation == "Sigmoid":
            return float(1 / (1 + np.exp(-z[0])))
        p = np.exp(z - z.max())
        return float((p / p.sum()) @ head.mask)

    worst, top = 0.0, 0.0
    for i in range(len(images)):
        grad = np.array(
            [
                (malignant(x[i] + step * e) - malignant(x[i] - step * e)) / (2 * step)
                for e in np.eye(x.shape[1])[: head.weights.shape[0]]
            ]
        )
        axis = 0 if head.channels_first else -1
        expected = np.maximum(np.tensordot(grad, np.moveaxis(features[i], axis, 0), axes=1), 0.0)
        worst = max(worst, float(np.abs(expected - cam[i]).max()))
        top = max(top, float(expected.max()))
    return {"member": member.name, "grid": list(cam.shape[1:]), "images": len(images),
            "max_abs_diff": worst, "largest_map_value": top}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package")
    parser.add_argument("--data", default="/work/shared/data/derm/labels.csv")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--member", action="append")
    args = parser.parse_args()
    folder = Path(args.package)
    manifest, _ = read_manifest(folder)
    with open(args.data, newline="") as handle:
        rows = list(csv.DictReader(handle))[: args.images]
    images = [Path(args.data).parent / (row.get("filename") or row["image"]) for row in rows]
    for member in manifest.members:
        if not args.member or member.name in args.member:
            print(json.dumps(check_member(folder, manifest, member, images)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

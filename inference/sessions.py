"""ONNX Runtime sessions for a model package (pure: no Django): the execution providers, the session
options, one checked session per member, and the members fused into one graph. ``inference.runtime``'s
``Ensemble`` runs them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort
from onnx import compose, helper

from inference.package import Manifest, MemberSpec, PackageError
from inference.preprocessing import ImageSpec

CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class RuntimeConfig:
    """Execution providers in order of preference, and ONNX Runtime thread counts (0 = ORT's default)."""

    providers: tuple[str, ...] = ("CUDAExecutionProvider", CPU)
    intra_op_threads: int = 0
    inter_op_threads: int = 1


def select_providers(requested: Sequence[str]) -> list[str]:
    """The requested providers this ONNX Runtime build has, in order, always ending with the CPU."""
    available = set(ort.get_available_providers())
    chosen = [p for p in requested if p in available and p != CPU]
    return [*chosen, CPU]


def session_options(config: RuntimeConfig, *, shared: bool) -> ort.SessionOptions:
    """Options for one member session. ``shared``: several sessions live in this process (an ensemble), so
    idle threads must not spin (measured: 3 spinning sessions were 2-3x slower on 2 cores)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Cases carry 1-10 images, so every batch size is a new input shape. ORT's memory-pattern planner traces
    # the first run of each shape and pre-allocates (and page-faults) one block on the second: measured on the
    # bundled ensemble, a 10-image case took 612 ms, then 1190 ms, before settling at 330 ms. Without the
    # planner: 438 ms, then 317 ms, and the same steady state (benchmarks/inference.py, docs/inference.md).
    options.enable_mem_pattern = False
    if config.intra_op_threads > 0:
        options.intra_op_num_threads = config.intra_op_threads
    if config.inter_op_threads > 0:
        options.inter_op_num_threads = config.inter_op_threads
    if shared:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def expose_outputs(graph: onnx.GraphProto, tensors: Sequence[str], *, where: str = "") -> onnx.GraphProto:
    """Make internal tensors of ``graph`` graph outputs too (in place; the file on disk is untouched). How a
    member's extra ``outputs`` (the class softmax, image features) are read without re-exporting it. Raises
    :class:`PackageError` when the graph has no such tensor."""
    present = {o.name for o in graph.output}
    produced = {name for node in graph.node for name in node.output}
    known = {v.name: v for v in graph.value_info}
    for name in tensors:
        if name in present:
            continue
        if name not in produced:
            raise PackageError(f"{where}the ONNX graph has no tensor '{name}' to expose as an output")
        info = onnx.ValueInfoProto()
        if name in known:
            info.CopyFrom(known[name])
        else:
            info.CopyFrom(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        graph.output.append(info)
        present.add(name)
    return graph


def _member_session(folder: Path, member: MemberSpec, config: RuntimeConfig, *, shared: bool):
    path = Path(folder) / member.file
    source: str | bytes = str(path)
    if member.outputs:
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 - onnx raises several types for unreadable files
            raise PackageError(f"member '{member.name}': {member.file} is not a readable ONNX file") from exc
        expose_outputs(model.graph, list(member.outputs.values()), where=f"member '{member.name}': ")
        source = model.SerializeToString()
    try:
        return ort.InferenceSession(
            source,
            sess_options=session_options(config, shared=shared),
            providers=select_providers(config.providers),
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad models
        raise PackageError(
            f"member '{member.name}': ONNX Runtime cannot load {member.file} ({_short(exc)})"
        ) from exc


def fuse_members(folder: Path, manifest: Manifest) -> bytes | None:
    """One ONNX graph that runs every member side by side: member ``k``'s nodes and weights are prefixed
    ``m{k}/``; each distinct image spec is one graph input (``image_{size}_{resize}_{normalisation}``), the
    metadata one input (``metadata``) and member ``k``'s output the graph output ``m{k}/{output}``.

    One session instead of one per member: one thread pool, which may spin (several sessions' pools spinning on
    two cores made the ensemble 2-3x slower), so ONNX Runtime's helper threads do not fall asleep between
    operators. In the worker this cut the bundled ensemble's model time by 10-15 % (docs/inference.md). Returns None
    when the members cannot share a graph (different opsets or IR versions, local functions)."""
    models = [onnx.load(str(Path(folder) / member.file)) for member in manifest.members]
    opsets = {tuple(sorted((o.domain, o.version) for o in m.opset_import)) for m in models}
    if len(opsets) != 1 or len({m.ir_version for m in models}) != 1 or any(m.functions for m in models):
        return None
    nodes, initializers, value_info, inputs, outputs = [], [], [], {}, []
    for k, (member, model) in enumerate(zip(manifest.members, models, strict=True)):
        prefix = f"m{k}/"
        graph = compose.add_prefix(model, prefix).graph
        for index, node in enumerate(graph.node):  # errors name the node: every node carries its member
            if not node.name or not node.name.startswith(prefix):
                node.name = f"{prefix}{node.name or f'node{index}'}"
        own_inputs = {i.name: i for i in graph.input}
        feeds = {fused_image_input(member.image): member.image_input}
        if member.metadata_input:
            feeds[FUSED_METADATA] = member.metadata_input
        for shared, own in feeds.items():
            if shared not in inputs:
                spec = onnx.ValueInfoProto()
                spec.CopyFrom(own_inputs[prefix + own])
                spec.name = shared
                inputs[shared] = spec
            nodes.append(helper.make_node("Identity", [shared], [prefix + own], name=f"{prefix}feed_{own}"))
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        value_info.extend(graph.value_info)
        outputs.extend(o for o in graph.output if o.name == prefix + member.output)
        extra = [prefix + tensor for tensor in member.outputs.values()]
        if extra:
            expose_outputs(graph, extra, where=f"member '{member.name}': ")
            outputs.extend(o for o in graph.output if o.name in extra)
    fused = helper.make_model(
        helper.make_graph(
            nodes, "teleder_ensemble", list(inputs.values()), outputs, initializers, value_info=value_info
        ),
        opset_imports=models[0].opset_import,
    )
    fused.ir_version = models[0].ir_version
    return fused.SerializeToString()


FUSED_METADATA = "metadata"


def fused_image_input(spec: ImageSpec) -> str:
    colour = "" if spec.colour == "none" else f"_{spec.colour}"
    return f"image_{spec.size}_{spec.resize}_{spec.normalisation}{colour}"


def _failed_member(exc: BaseException, manifest: Manifest) -> str | None:
    """The member whose node failed in the fused graph (ORT names the node, which carries the m{k}/ prefix)."""
    import re

    match = re.search(r"\bm(\d+)/", str(exc))
    if match and int(match.group(1)) < len(manifest.members):
        return manifest.members[int(match.group(1))].name
    return None


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_signature(session, member: MemberSpec, manifest: Manifest) -> None:
    """The member's graph takes exactly the inputs the manifest names, with compatible shapes."""
    where = f"member '{member.name}'"
    inputs = {i.name: i for i in session.get_inputs()}
    expected = {member.image_input} | ({member.metadata_input} if member.metadata_input else set())
    for name in expected - set(inputs):
        raise PackageError(f"{where}: the ONNX graph has no input '{name}' (it has {sorted(inputs)})")
    for name in set(inputs) - expected:
        raise PackageError(f"{where}: the ONNX graph needs input '{name}', which the manifest does not feed")
    size = member.image.size
    image = inputs[member.image_input]
    if "float" not in image.type:
        raise PackageError(f"{where}: image input '{image.name}' must be float32, not {image.type}")
    if len(image.shape) != 4 or not _dims_match(image.shape[1:], (size, size, 3)):
        raise PackageError(
            f"{where}: image input '{image.name}' has shape {image.shape}, but the manifest gives "
            f"NHWC [batch, {size}, {size}, 3]"
        )
    if member.metadata_input:
        meta = inputs[member.metadata_input]
        if len(meta.shape) != 2 or not _dims_match(meta.shape[1:], (manifest.metadata.size,)):
            raise PackageError(
                f"{where}: metadata input '{meta.name}' has shape {meta.shape}, but the manifest's metadata "
                f"encoding has {manifest.metadata.size} features"
            )
    outputs = [o.name for o in session.get_outputs()]
    if member.output not in outputs:
        raise PackageError(f"{where}: the ONNX graph has no output '{member.output}' (it has {outputs})")


def _dims_match(actual: Sequence, expected: Sequence[int]) -> bool:
    # A symbolic (str) or unknown (None) dimension accepts any size.
    return all(not isinstance(a, int) or a <= 0 or a == e for a, e in zip(actual, expected, strict=True))

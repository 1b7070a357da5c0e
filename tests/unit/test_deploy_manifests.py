"""deploy/: the manifests and the Dockerfile agree with each other and with the code.

No cluster and no Docker engine here, so the checks are structural: YAML loads, ports line
up, probe paths are real routes, env names are ones the code reads, no key is inline, and
the generated ConfigMap carries exactly the registry files. When kubectl is installed, its
built-in kustomize also renders the whole thing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from graph.registry import PROVIDER_KEY_ENV

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
EXTERNAL_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP", "POD_NAME"}
"""Read by LiteLLM itself, and the pod name used in `$(POD_NAME)` expansion."""


def load(name: str) -> list[dict[str, Any]]:
    with (K8S / name).open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def one(kind: str) -> dict[str, Any]:
    kustomization = load("kustomization.yaml")[0]
    docs = [d for f in kustomization["resources"] for d in load(f) if d["kind"] == kind]
    assert len(docs) == 1, f"expected one {kind}, found {len(docs)}"
    return docs[0]


def container() -> dict[str, Any]:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_read_by_code() -> set[str]:
    """Every literal variable name the package reads from the environment."""
    pattern = re.compile(r"""os\.(?:environ\.get|environ\[|getenv)\(?\s*["']([A-Z0-9_]+)["']""")
    names: set[str] = set()
    for folder in ("graph", "nodes"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(pattern.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_manifest_is_valid_yaml_with_kind_and_name() -> None:
    for path in K8S.glob("*.yaml"):
        for doc in load(path.name):
            assert doc.get("apiVersion") and doc.get("kind"), path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path


def test_service_targets_the_container_port() -> None:
    service, ctr = one("Service"), container()
    ports = {p.get("name"): p["containerPort"] for p in ctr["ports"]}
    (port,) = service["spec"]["ports"]
    assert service["metadata"]["name"] == "model-selector" and port["port"] == 8080
    target = port["targetPort"]
    assert (ports.get(target) if isinstance(target, str) else target) == 8080
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_deployment_matches_the_spec() -> None:
    deployment, ctr = one("Deployment"), container()
    spec = deployment["spec"]
    assert deployment["metadata"]["name"] == "model-selector" and spec["replicas"] == 3
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    env = {e["name"]: e for e in ctr["env"]}
    assert env["REDIS_URL"]["value"] == "redis://redis-master:6379/2"
    assert env["REGISTRY_PATH"]["value"] == "/config/model_registry.yaml"
    mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    config = next(name for name, v in volumes.items() if "configMap" in v)
    assert volumes[config]["configMap"]["name"] == "model-registry-config"
    assert mounts[config] == "/config"
    assert ctr["resources"]["requests"] and ctr["resources"]["limits"]


def test_env_names_are_ones_the_code_reads() -> None:
    known = env_read_by_code() | EXTERNAL_ENV
    assert {"REDIS_URL", "REGISTRY_PATH", "FEEDBACK_LOG_PATH"} <= known  # the scan works
    for entry in container()["env"]:
        assert entry["name"] in known, f"{entry['name']} is read by nothing"
        for ref in re.findall(r"\$\(([A-Z0-9_]+)\)", entry.get("value", "")):
            assert ref in {e["name"] for e in container()["env"]}, ref


def test_api_keys_only_come_from_a_secret() -> None:
    ctr = container()
    key_vars = {v for v in PROVIDER_KEY_ENV.values() if v}
    for entry in ctr["env"]:
        looks_secret = entry["name"] in key_vars or re.search(r"KEY|TOKEN|SECRET|PASSWORD",
                                                             entry["name"])
        if looks_secret:
            assert "secretKeyRef" in entry.get("valueFrom", {}), entry["name"]
        assert not re.search(r"sk-|gsk_|AIza", str(entry.get("value", ""))), entry["name"]
    assert any("secretRef" in source for source in ctr.get("envFrom", []))
    assert "kind: Secret" not in "".join(p.read_text() for p in K8S.glob("*.yaml"))


def test_probes_hit_routes_the_app_has() -> None:
    from graph.service import create_app

    routes = {getattr(r, "path", None) for r in create_app().routes}
    ctr = container()
    ports = {p.get("name") for p in ctr["ports"]} | {p["containerPort"] for p in ctr["ports"]}
    probes = {k: ctr[k]["httpGet"] for k in ("livenessProbe", "readinessProbe", "startupProbe")
              if k in ctr}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for name, probe in probes.items():
        assert probe["path"] in routes, name
        assert probe["port"] in ports, name


def test_pod_disruption_budget_keeps_a_majority() -> None:
    pdb, deployment = one("PodDisruptionBudget"), one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 0 < pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_configmap_generator_carries_the_registry_files() -> None:
    kustomization = load("kustomization.yaml")[0]
    (generator,) = kustomization["configMapGenerator"]
    assert generator["name"] == "model-registry-config"
    files = dict(item.split("=", 1) for item in generator["files"])
    assert set(files) == {"model_registry.yaml", "fallback_policies.yaml"}
    for key, source in files.items():
        path = (K8S / source).resolve()
        assert path == ROOT / "config" / key and path.is_file()
    env = {e["name"]: e.get("value", "") for e in container()["env"]}
    assert Path(env["REGISTRY_PATH"]).name in files
    assert Path(env.get("FALLBACK_POLICIES_PATH", "/config/fallback_policies.yaml")).name in files
    images = {i["name"] for i in kustomization.get("images", [])}
    assert container()["image"].split(":")[0] in images


def test_dockerfile_serves_the_app_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line.split(None, 1) for line in text.replace("\\\n", " ").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    by_name: dict[str, list[str]] = {}
    for name, *rest in instructions:
        by_name.setdefault(name.upper(), []).append(rest[0] if rest else "")
    assert all(image.startswith("python:3.11-slim") for image in by_name["FROM"])
    user = by_name["USER"][-1].split(":")[0]
    assert user not in {"root", "0"}
    assert by_name["EXPOSE"] == [str(container()["ports"][0]["containerPort"])]
    cmd = by_name["CMD"][-1]
    assert "graph.service:app" in cmd and '"--port", "8080"' in cmd
    assert "/healthz" in by_name["HEALTHCHECK"][0]
    assert any('".[service]"' in run for run in by_name["RUN"])
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"fastapi", "uvicorn"} <= {re.split(r"[<>=\[ ]", d)[0]
                                      for d in extras["optional-dependencies"]["service"]}
    for copy in by_name["COPY"]:
        if "--from=" not in copy:
            for source in copy.split()[:-1]:
                if not source.endswith("*"):
                    assert (ROOT / source).exists(), source


def test_the_build_context_sends_what_the_image_copies_and_not_the_venv() -> None:
    """The context is the repo root: without .dockerignore, .venv and .git were sent too."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    copied = {source.rstrip("*") for line in text.splitlines()
              if line.startswith("COPY") and "--from=" not in line
              for source in line.split()[1:-1]}
    rules = [line for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything excluded, then the image's sources allowed back
    assert {r[1:] for r in rules if r.startswith("!")} == copied


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders_and_rewrites_the_configmap_name() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor=LoadRestrictionsNone", str(K8S)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    docs = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert set(docs) == {"ConfigMap", "Service", "Deployment", "PodDisruptionBudget"}
    configmap = docs["ConfigMap"]
    assert set(configmap["data"]) == {"model_registry.yaml", "fallback_policies.yaml"}
    assert configmap["data"]["model_registry.yaml"] == (ROOT / "config" /
                                                        "model_registry.yaml").read_text()
    volumes = docs["Deployment"]["spec"]["template"]["spec"]["volumes"]
    names = {v["configMap"]["name"] for v in volumes if "configMap" in v}
    assert names == {configmap["metadata"]["name"]}  # the hashed name, followed

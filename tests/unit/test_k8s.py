"""The Kubernetes manifests (deploy/k8s), checked offline: no cluster, no network.

Every object validates against the Kubernetes JSON schemas that kubernetes-validate
bundles (for a pinned Kubernetes version, strictly: unknown fields are errors), KEDA's
objects against the CRD schemas vendored in deploy/k8s/schemas; every toolfleet command
in them is a real command with real options (as for the compose file); the kustomization
lists every file and renders with kubectl's kustomize when kubectl is installed; the
grace period follows each profile's deadline; and no secret value is in a manifest.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kombu.transport import redis as kombu_redis

from toolfleet.broker import shared_queue
from toolfleet.cli.local import FLOWER_TASKS_COLUMNS
from toolfleet.profiles import Profile, load_profiles
from toolfleet.settings import Settings

from ..flower_options import assert_flower_options
from .test_compose import assert_real_toolfleet_command

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
DEPLOY_PROFILES = ROOT / "deploy" / "profiles.toml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
#: the Kubernetes release the manifests are validated for (KEDA 2.20 supports 1.30+)
KUBERNETES_VERSION = "1.30"
#: Deployment -> the profile it runs (as compose's worker services)
WORKERS = {"worker-python": "python", "worker-bash": "bash", "worker-aider": "aider-wt"}
#: the drain waits for the prompt deadline plus this, for a session's last prompts
SESSION_SLACK = 60
#: after the drain: Celery's warm shutdown and the tool's exit
STOP_MARGIN = 30
#: the values of the example secrets (what `cp secrets/X.env.example secrets/X.env` gives)
KEDA_SCHEMAS = {
    "ScaledObject": SCHEMAS / "keda.sh_scaledobjects.v1alpha1.json",
    "TriggerAuthentication": SCHEMAS / "keda.sh_triggerauthentications.v1alpha1.json",
}
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


# ---- reading the tree ------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def kustomization(directory: Path) -> dict[str, Any]:
    return load_yaml(directory / "kustomization.yaml")


def resource_files(directory: Path = K8S) -> list[Path]:
    """Every manifest file the kustomization in ``directory`` (and its components) uses."""
    spec = kustomization(directory)
    found = [directory / name for name in spec.get("resources", [])]
    for component in spec.get("components", []):
        found += resource_files(directory / component)
    return found


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


@functools.cache
def objects() -> list[dict[str, Any]]:
    """Every object of the default deployment (Redis in the cluster), as written."""
    return [doc for path in resource_files() for doc in documents(path)]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in objects() if o["kind"] == kind]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"]
    result: list[dict[str, Any]] = spec.get("initContainers", []) + spec["containers"]
    return result


def config() -> dict[str, str]:
    data: dict[str, str] = named("ConfigMap", "toolfleet-config")["data"]
    return data


def example_secrets() -> dict[str, dict[str, str]]:
    """Generated Secret name -> its keys and values from the committed examples."""
    result = {}
    for generator in kustomization(K8S)["secretGenerator"]:
        values: dict[str, str] = {}
        for env_file in generator["envs"]:
            example = K8S / f"{env_file}.example"
            for line in example.read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    key, _, value = line.partition("=")
                    values[key.strip()] = value
        result[generator["name"]] = values
    return result


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(NAME)`` expansion: names defined before are replaced."""
    return _REFERENCE.sub(lambda m: env.get(m[1], m[0]), value)


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The environment Kubernetes gives ``container`` (envFrom, then env in order),
    with the example secrets' values."""
    secrets = example_secrets()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(secrets[source["secretRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            env[item["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        else:
            key = ref["configMapKeyRef"]
            env[item["name"]] = named("ConfigMap", key["name"])["data"][key["key"]]
    return env


def deployment_profiles() -> dict[str, Profile]:
    """The profiles every pod knows: built-ins and the ConfigMap's profiles.toml."""
    text = named("ConfigMap", "toolfleet-profiles")["data"]["profiles.toml"]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "profiles.toml"
        path.write_text(text, encoding="utf-8")
        return load_profiles(path)


def toolfleet_commands() -> Iterator[tuple[str, list[str]]]:
    """(where, argv) of every toolfleet command a manifest runs: container args,
    probes, lifecycle hooks."""
    for obj in objects():
        if "template" not in obj.get("spec", {}):
            continue
        for c in containers(obj):
            where = f"{obj['metadata']['name']}/{c['name']}"
            found = {"args": c.get("command", []) + c.get("args", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                found[probe] = c.get(probe, {}).get("exec", {}).get("command", [])
            found["preStop"] = (
                c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            )
            for what, args in found.items():
                if args and args[0] == "toolfleet":
                    yield f"{where} {what}", [str(a) for a in args]


# ---- validation ------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """``schema`` rejecting undeclared fields, as the API server's strict field
    validation does (objects listing properties and saying nothing of others)."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@functools.cache
def keda_validator(kind: str) -> jsonschema.protocols.Validator:
    schema = strict(json.loads(KEDA_SCHEMAS[kind].read_text(encoding="utf-8")))
    validator: jsonschema.protocols.Validator = jsonschema.Draft7Validator(schema)
    return validator


def validate(obj: dict[str, Any]) -> None:
    """Raise unless ``obj`` is valid: Kubernetes' own kinds against the bundled schemas,
    KEDA's against the vendored CRD schemas."""
    if obj["apiVersion"].startswith("keda.sh/"):
        assert obj["apiVersion"] == "keda.sh/v1alpha1", obj["apiVersion"]
        keda_validator(obj["kind"]).validate(obj)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def object_id(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def test_the_kustomization_lists_every_manifest_and_only_those():
    listed = {p.resolve() for p in resource_files()}
    assert all(p.exists() for p in listed), sorted(str(p) for p in listed if not p.exists())
    on_disk = {
        p.resolve()
        for p in K8S.rglob("*.yaml")
        if p.name not in ("kustomization.yaml", "kustomizeconfig.yaml")
    }
    assert listed == on_disk, f"not listed: {sorted(map(str, on_disk - listed))}"
    spec = kustomization(K8S)
    assert spec["namespace"] == "toolfleet" and spec["components"] == ["redis"]
    for component in ("redis", "external-redis"):  # the Redis choice
        assert kustomization(K8S / component)["kind"] == "Component"
    for name in spec["configurations"]:
        assert (K8S / name).exists(), name


@pytest.mark.parametrize("obj", objects(), ids=object_id)
def test_every_object_validates_against_its_schema(obj):
    validate(obj)


def test_the_schema_checks_reject_broken_objects():
    """Control: the validators really validate."""
    deployment = copy.deepcopy(named("Deployment", "worker-python"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = copy.deepcopy(named("ScaledObject", "worker-python"))
    scaled["spec"]["minReplicas"] = 1  # not KEDA's name
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    scaled = copy.deepcopy(named("ScaledObject", "worker-python"))
    scaled["spec"]["triggers"][0]["metadata"]["databaseIndex"] = 0  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    auth = copy.deepcopy(named("TriggerAuthentication", "toolfleet-redis"))
    auth["spec"]["secretTargetRef"][0].pop("key")
    with pytest.raises(jsonschema.ValidationError):
        validate(auth)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("redis_choice", ["redis", "external-redis"])
def test_the_kustomization_renders_and_every_rendered_object_validates(tmp_path, redis_choice):
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("*.env"))
    spec = kustomization(tree)
    spec["components"] = [redis_choice]
    (tree / "kustomization.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")

    def render() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "kustomize", str(tree)], capture_output=True, text=True, timeout=120
        )

    refused = render()  # like compose without REDIS_PASSWORD: no secrets, no deployment
    assert refused.returncode != 0 and "secrets/" in refused.stderr, refused.stderr
    for example in (tree / "secrets").glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    proc = render()
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d is not None]
    for obj in rendered:
        validate(obj)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "toolfleet", object_id(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "toolfleet"
    kinds = [object_id(o) for o in rendered]
    assert ("StatefulSet/redis" in kinds) == (redis_choice == "redis")
    secrets = {o["metadata"]["name"] for o in rendered if o["kind"] == "Secret"}
    assert len(secrets) == 4 and all(
        re.fullmatch(r"toolfleet-\w+-[a-z0-9]{10}", s) for s in secrets
    )
    # the generated names (with their hash) are what every reference names, KEDA's too
    auth = next(o for o in rendered if o["kind"] == "TriggerAuthentication")
    assert {r["name"] for r in auth["spec"]["secretTargetRef"]} <= secrets
    for obj in rendered:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for c in containers(obj):
                for item in c.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] in secrets, (object_id(obj), ref)
                for source in c.get("envFrom", []):
                    if "secretRef" in source:
                        assert source["secretRef"]["name"] in secrets
    # the control characters of the priority lists survive kustomize
    lists = [
        t["metadata"]["listName"]
        for o in rendered
        if o["kind"] == "ScaledObject"
        for t in o["spec"]["triggers"]
    ]
    assert "toolfleet.python\x06\x169" in lists
    address = next(o for o in rendered if object_id(o) == "ConfigMap/toolfleet-config")
    external = redis_choice == "external-redis"
    assert (address["data"]["REDIS_ADDRESS"] == "redis.example.internal:6379") == external


# ---- what runs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "args"), list(toolfleet_commands()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_toolfleet_commands_in_the_manifests_are_real(where, args):
    assert_real_toolfleet_command(args, where)


def test_every_toolfleet_command_is_found():
    found = {" ".join(args[:2]) for _, args in toolfleet_commands()}
    assert found == {
        "toolfleet worker",
        "toolfleet check",
        "toolfleet drain",
        "toolfleet exporter",
        "toolfleet flower",
        "toolfleet web",
    }


def test_a_worker_deployment_per_profile_with_its_probes_and_drain():
    profiles = deployment_profiles()
    for name, profile in WORKERS.items():
        deployment = named("Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        assert "replicas" not in deployment["spec"], f"{name}: KEDA's autoscaler owns replicas"
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert pod["enableServiceLinks"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True
        (worker,) = pod["containers"]
        assert "command" not in worker, f"{name}: args keep the image's tini as PID 1"
        assert worker["args"] == ["toolfleet", "worker", "--profile", profile]
        assert profile in profiles, profile
        check = ["toolfleet", "check", "--profile", profile, "--this-host"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert worker[probe]["exec"]["command"] == check, (name, probe)
        ready, live, start = (
            worker[p] for p in ("readinessProbe", "livenessProbe", "startupProbe")
        )
        # liveness is lenient (the worker restarts its tool itself): minutes, not seconds
        assert live["failureThreshold"] * live["periodSeconds"] >= 300
        assert ready["failureThreshold"] * ready["periodSeconds"] < 60
        # the startup probe waits longer than the tool may take to start
        assert start["failureThreshold"] * start["periodSeconds"] >= 2 * (
            profiles[profile].start_timeout
        )
        for probe in (ready, live, start):
            assert probe["timeoutSeconds"] >= 5, "a check starts a Python process"
        prestop = worker["lifecycle"]["preStop"]["exec"]["command"]
        assert prestop[:3] == ["toolfleet", "drain", "--this-host"], name
        mount = next(m for m in worker["volumeMounts"] if m["name"] == "profiles")
        assert Path(config()["TOOLFLEET_PROFILES"]).parent == Path(mount["mountPath"])
        volume = next(v for v in pod["volumes"] if v["name"] == "profiles")
        assert volume["configMap"]["name"] == "toolfleet-profiles"
    aider = named("Deployment", "worker-aider")["spec"]["template"]["spec"]["containers"][0]
    assert aider["image"].startswith("toolfleet-aider")
    assert {"secretRef": {"name": "toolfleet-aider"}} in aider["envFrom"]
    assert "AIDER_REPO" in example_secrets()["toolfleet-aider"]
    assert profiles["aider-wt"].workspace == "worktree" and profiles["aider-wt"].repo == (
        "${AIDER_REPO}"
    )


@pytest.mark.parametrize(("deployment", "profile"), WORKERS.items())
def test_the_grace_period_follows_the_profile_deadline(deployment, profile):
    """The preStop drain waits for the running prompt (the profile's prompt_timeout, then
    grace for its interrupt) and a minute more for a session; Kubernetes kills the pod
    terminationGracePeriodSeconds after the hook started, so that is the drain's timeout
    and the time to stop the worker."""
    known = deployment_profiles()[profile]
    pod = named("Deployment", deployment)["spec"]["template"]["spec"]
    prestop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    drain_timeout = int(prestop[prestop.index("--timeout") + 1])
    deadline = known.prompt_timeout + known.grace
    assert drain_timeout == math.ceil(deadline) + SESSION_SLACK
    assert pod["terminationGracePeriodSeconds"] == drain_timeout + STOP_MARGIN
    assert pod["terminationGracePeriodSeconds"] > deadline


def test_the_deployment_profiles_are_compose_s():
    text = named("ConfigMap", "toolfleet-profiles")["data"]["profiles.toml"]
    assert tomllib.loads(text) == tomllib.loads(DEPLOY_PROFILES.read_text(encoding="utf-8"))


# ---- settings and secrets --------------------------------------------------------------


def toolfleet_containers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (object_id(o), c)
        for o in objects()
        if o["kind"] == "Deployment"
        for c in containers(o)
        if c["args"][0] in ("toolfleet", "celery")
    ]


def test_every_toolfleet_pod_gets_every_setting():
    settings = {f"TOOLFLEET_{name.upper()}" for name in Settings.model_fields}
    assert len(toolfleet_containers()) == 6  # three workers, Flower, the exporter, web
    for where, container in toolfleet_containers():
        given = {k for k in container_env(container) if k.startswith("TOOLFLEET_")}
        assert given == settings, f"{where}: {given ^ settings}"


def test_the_configuration_makes_valid_settings(monkeypatch):
    """With the example secrets, each pod's environment is what Settings expects."""
    password = example_secrets()["toolfleet-redis"]["REDIS_PASSWORD"]
    for where, container in toolfleet_containers():
        env = container_env(container)
        assert not any(_REFERENCE.search(v) for v in env.values()), f"{where}: unexpanded"
        for key in [k for k in os.environ if k.startswith("TOOLFLEET_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("TOOLFLEET_"):
                monkeypatch.setenv(key, value)
        settings = Settings.from_env()
        assert settings.broker_url == f"redis://:{password}@redis.toolfleet.svc:6379/0", where
        assert settings.result_backend == settings.broker_url
        assert settings.profiles == Path("/etc/toolfleet/profiles.toml")
        assert settings.task_events is True  # Flower and the exporter need task events


def test_redis_address_names_the_service_from_any_namespace():
    service = named("Service", "redis")
    host, _, port = config()["REDIS_ADDRESS"].partition(":")
    namespace = kustomization(K8S)["namespace"]
    assert host == f"{service['metadata']['name']}.{namespace}.svc"
    assert int(port) == service["spec"]["ports"][0]["port"] == 6379


def test_redis_is_persistent_and_needs_the_password():
    redis = named("StatefulSet", "redis")
    (server,) = containers(redis)
    assert server["image"].startswith("redis:7")
    args = server["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = container_env(server)
    assert (
        expand("$(REDIS_PASSWORD)", env) == example_secrets()["toolfleet-redis"]["REDIS_PASSWORD"]
    )
    assert server["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert "redis-cli" in " ".join(server["readinessProbe"]["exec"]["command"])
    assert named("Service", "redis")["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_no_secret_value_is_in_a_manifest():
    assert not of_kind("Secret"), "Secrets are generated from git-ignored files"
    examples = example_secrets()
    secret_values = {v for values in examples.values() for v in values.values() if len(v) > 5}
    text = "\n".join(p.read_text(encoding="utf-8") for p in K8S.rglob("*.yaml"))
    for value in secret_values:
        assert value not in text
    for where, container in toolfleet_containers():
        for item in container.get("env", []):
            if any(word in item["name"] for word in ("PASSWORD", "KEY", "TOKEN")):
                assert "valueFrom" in item, f"{where}: {item['name']} written out"
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in examples[ref["name"]], (where, ref)
    for generator in kustomization(K8S)["secretGenerator"]:
        for env_file in generator["envs"]:
            ignored = subprocess.run(
                ["git", "check-ignore", "-q", str(K8S / env_file)], cwd=ROOT, timeout=30
            )
            assert ignored.returncode == 0, f"{env_file} is not git-ignored"
    for name in ("toolfleet-redis", "toolfleet-flower"):
        assert any("change-me" in v for v in examples[name].values()), name
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", examples["toolfleet-redis"]["REDIS_PASSWORD"])


# ---- KEDA ------------------------------------------------------------------------------


def priority_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps ``queue``'s messages in, one per priority step."""
    channel = object.__new__(kombu_redis.Channel)  # its names only: no connection
    return [channel._q_for_pri(queue, step) for step in channel.priority_steps]


def test_each_profile_scales_on_every_priority_list_of_its_queue():
    assert priority_lists("toolfleet.python")[1] == "toolfleet.python\x06\x163"
    auth = named("TriggerAuthentication", "toolfleet-redis")
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in of_kind("ScaledObject")}
    assert set(scaled) == set(WORKERS)
    for deployment, profile in WORKERS.items():
        spec = scaled[deployment]["spec"]
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"redis"}
        lists = [t["metadata"]["listName"] for t in triggers]
        assert lists == priority_lists(shared_queue(profile)), deployment
        for t in triggers:
            assert t["authenticationRef"]["name"] == auth["metadata"]["name"]
            # the database of the broker URL every pod builds
            assert t["metadata"]["databaseIndex"] == "0"
        assert "/0$(REDIS_URL_OPTIONS)" in json.dumps(objects())
        modifiers = spec["advanced"]["scalingModifiers"]
        terms = [term.strip() for term in modifiers["formula"].split("+")]
        assert sorted(terms) == sorted(t["name"] for t in triggers), "the formula sums them all"
        assert modifiers["metricType"] == "AverageValue" and float(modifiers["target"]) == 1


def test_activation_is_at_the_first_waiting_prompt_and_one_worker_stays():
    """KEDA activates a ScaledObject when its composite metric exceeds activationTarget:
    with 0, one waiting prompt (in any priority list) wakes a profile scaled to zero."""
    for scaled in of_kind("ScaledObject"):
        spec = scaled["spec"]
        activation = float(spec["advanced"]["scalingModifiers"]["activationTarget"])
        names = [t["name"] for t in spec["triggers"]]

        def active(queued: dict[str, int], at: float = activation, of: list[str] = names) -> bool:
            return sum(queued.get(n, 0) for n in of) > at

        assert not active({})
        for name in names:
            assert active({name: 1})
        # sessions, submit --worker and check need a live worker: one stays by default
        assert spec["minReplicaCount"] == 1 and spec["maxReplicaCount"] > 1
        assert spec["pollingInterval"] <= 30


def test_keda_reads_redis_where_and_as_the_workers_do():
    auth = named("TriggerAuthentication", "toolfleet-redis")["spec"]
    (password,) = auth["secretTargetRef"]
    assert (password["parameter"], password["name"], password["key"]) == (
        "password",
        "toolfleet-redis",
        "REDIS_PASSWORD",
    )
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["configMapTargetRef"]}
    assert refs == {
        "address": ("toolfleet-config", "REDIS_ADDRESS"),
        "tls": ("toolfleet-config", "REDIS_TLS"),
    }
    assert config()["REDIS_TLS"] in ("enable", "disable")
    assert (config()["REDIS_TLS"] == "enable") == (config()["REDIS_URL_SCHEME"] == "rediss")
    rewritten = load_yaml(K8S / "kustomizeconfig.yaml")["nameReference"]
    assert {(r["kind"], f["path"]) for r in rewritten for f in r["fieldSpecs"]} == {
        ("Secret", "spec/secretTargetRef/name"),
        ("ConfigMap", "spec/configMapTargetRef/name"),
    }


# ---- Flower and the exporter -----------------------------------------------------------


def test_flower_has_basic_auth_from_a_secret_and_compose_s_options():
    (flower,) = containers(named("Deployment", "flower"))
    assert flower["args"][:2] == ["toolfleet", "flower"]
    env = {item["name"]: item for item in flower["env"]}
    assert env["FLOWER_BASIC_AUTH"]["value"] == "$(FLOWER_USER):$(FLOWER_PASSWORD)"
    for name in ("FLOWER_USER", "FLOWER_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "toolfleet-flower"
    assert env["FLOWER_TASKS_COLUMNS"]["value"] == FLOWER_TASKS_COLUMNS
    assert flower["readinessProbe"]["httpGet"]["path"] == "/healthcheck"
    port = flower["ports"][0]["containerPort"]
    args = flower["args"]
    assert int(args[args.index("--port") + 1]) == port
    assert named("Service", "flower")["spec"]["ports"][0]["port"] == port
    # every FLOWER_* is one of Flower's (tornado) options
    names = ["port", "address"]
    # FLOWER_USER and FLOWER_PASSWORD are no options (Flower ignores them); FLOWER_PORT
    # is one, which is why no pod gets the Services' variables (FLOWER_PORT=tcp://...)
    secret = ("FLOWER_USER", "FLOWER_PASSWORD")
    names += [
        k[len("FLOWER_") :].lower() for k in env if k.startswith("FLOWER_") and k not in secret
    ]
    assert named("Deployment", "flower")["spec"]["template"]["spec"]["enableServiceLinks"] is False
    assert_flower_options(names, envvars=True)


def test_the_exporter_serves_one_copy_of_the_metrics_where_prometheus_looks():
    deployment = named("Deployment", "exporter")
    assert deployment["spec"]["replicas"] == 1, "two exporters would serve every series twice"
    (exporter,) = containers(deployment)
    args = exporter["args"]
    port = int(args[args.index("--port") + 1])
    assert exporter["ports"][0]["containerPort"] == port
    service = named("Service", "exporter")
    assert service["spec"]["ports"][0]["port"] == port
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/metrics"


# ---- docs/deploy.md --------------------------------------------------------------------


def test_the_doc_walks_from_up_to_compose_to_kubernetes():
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", doc, re.M)
    assert "Kubernetes" in headings and "From `toolfleet up` to compose to Kubernetes" in headings
    if "Metrics" in headings:  # the Metrics section stays the last
        assert headings.index("Kubernetes") < headings.index("Metrics")
    section = doc.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    for phrase in (
        "kubectl apply -k deploy/k8s",
        "external-redis",
        "secrets/redis.env",
        "toolfleet drain --this-host",
        "terminationGracePeriodSeconds",
        "### Scale to zero",
        "minReplicaCount",
        "NoWorkers",
    ):
        assert phrase in section, phrase

"""The dashboard in the deployment files: compose's ``web`` service and the Kubernetes
``web`` Deployment listen on every address, so each gets its token from a secret (and
refuses to start without one), and is probed where it answers without the token."""

from __future__ import annotations

import re

from toolfleet.web.access import MIN_TOKEN, access_for

from .test_compose import active_example_env, argv, interpolate, services
from .test_k8s import DEPLOY_DOC, containers, example_secrets, named


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_compose_runs_the_dashboard_with_a_required_token() -> None:
    web = services()["web"]
    args = argv(web["command"])
    assert args[:2] == ["toolfleet", "web"]
    assert option(args, "--address") == "0.0.0.0"  # in its container: refused without a token
    variable = option(args, "--token-env")
    assert re.fullmatch(r"\$\{WEB_TOKEN:\?[^}]+\}", web["environment"][variable])
    token = interpolate(web["environment"][variable], active_example_env())
    assert "change-me" in token and len(token) >= MIN_TOKEN
    access_for("0.0.0.0", token, variable)  # the example's token is one the command takes
    port = option(args, "--port")
    assert any(str(p).endswith(f":{port}") for p in web["ports"])
    check = " ".join(argv(web["healthcheck"]["test"]))
    assert f"http://127.0.0.1:{port}/healthz" in check
    assert web["depends_on"]["redis"]["condition"] == "service_healthy"
    # apply merges into the repository the aider workers' changes come from
    assert option(args, "--repo") == "/repo" and web["working_dir"] == "/repo"
    assert any(str(v).endswith(":/repo") for v in web["volumes"])
    assert set(services()["worker-aider"]["volumes"]) >= set(web["volumes"])


def test_kubernetes_runs_one_dashboard_with_its_token_from_a_secret() -> None:
    deployment = named("Deployment", "web")
    assert deployment["spec"]["replicas"] == 1
    (web,) = containers(deployment)
    args = web["args"]
    assert args[:2] == ["toolfleet", "web"] and option(args, "--address") == "0.0.0.0"
    env = {item["name"]: item for item in web["env"]}
    ref = env[option(args, "--token-env")]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "toolfleet-web"
    token = example_secrets()["toolfleet-web"][ref["key"]]
    assert "change-me" in token and len(token) >= MIN_TOKEN
    port = int(option(args, "--port"))
    assert web["ports"][0]["containerPort"] == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert web[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert named("Service", "web")["spec"]["ports"][0]["port"] == port


def test_the_deploy_doc_tells_how_to_reach_the_dashboard() -> None:
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    for phrase in ("`web`", "WEB_TOKEN", "http://localhost:8088", "port-forward svc/web 8088"):
        assert phrase in doc, phrase

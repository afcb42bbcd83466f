"""docker-compose.yml run for real: built, brought up, used, a worker killed, a service
scaled, brought down; each check prints what it saw. Run by ``./run test-compose``."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from ..helpers import eventually
from .stack import Stack

WORKERS = ("worker-python", "worker-bash", "worker-aider")


def _workers(stack: Stack, profile: str, state: str = "ready") -> list[str]:
    return sorted(
        str(r["worker"]) for r in stack.status() if r["profile"] == profile and r["state"] == state
    )


def test_every_service_turns_healthy(stack: Stack) -> None:
    started = time.monotonic()
    services = {"redis", "flower", "exporter", "web", "fake-model", *WORKERS}

    def all_healthy() -> bool:
        running = [c for c in stack.containers() if c.running]
        if {c.service for c in running} != services:
            return False
        return all(stack.healthy(c) for c in running)

    eventually(all_healthy, 240, lambda: f"not all healthy: {stack.containers()}", interval=2)
    took = time.monotonic() - started
    stack.figures["up to all healthy"] = f"{took:.0f} s"
    print(f"every service healthy {took:.0f} s after up: {sorted(services)}")
    replicas = {s: len(stack.containers(s)) for s in WORKERS}
    assert replicas == {"worker-python": 2, "worker-bash": 1, "worker-aider": 1}, replicas


def test_the_producer_service_gets_its_answer(stack: Stack) -> None:
    out = stack.compose("--profile", "tools", "run", "--rm", "producer", timeout=180)
    print(f"producer: {out.strip().splitlines()[-1]}")
    assert out.strip().splitlines()[-1] == "45"


def test_a_prompt_to_each_worker_profile(stack: Stack) -> None:
    asked = {"python": ("6 * 7", "42"), "bash": ("echo $((6 * 7))", "42")}
    for profile, (text, expected) in asked.items():
        out = stack.exec("web", "toolfleet", "submit", "--profile", profile, "--wait", text)
        print(f"{profile}: {text!r} -> {out.strip()!r}")
        assert out.strip() == expected
    # the real aider, in its worktree, on the scripted model: a rollout of one file from
    # the aider container (git, and the repository at /repo), its change recorded
    steps = ["-s", "/add {path}", "-s", "add a DOC_ID header to {path}"]
    out = stack.exec("worker-aider", "toolfleet", "map", "-p", "aider-wt", *steps, "--json", "a.py")
    outcome = json.loads(out.splitlines()[0])
    print(f"aider-wt: {outcome['output'].splitlines()[-1]!r}, change {outcome['changes']}")
    assert outcome["ok"] and outcome["changes"]["files"] == ["a.py"]
    diff = stack.exec("worker-aider", "toolfleet", "changes", "show", outcome["changes"]["id"])
    assert "+# DOC_ID: a" in diff


def test_status_lists_every_instance_and_how_it_is_confined(stack: Stack) -> None:
    records = stack.status()
    print("status: " + ", ".join(f"{r['worker']} {r['state']} {r['sandbox']}" for r in records))
    containers = [c for c in stack.containers() if c.service in WORKERS and c.running]
    assert len(records) == len(containers)
    assert {r["state"] for r in records} == {"ready"}
    # the workers' profiles are sandbox = "auto": confined, not "none: <why>"
    assert {r["sandbox"] for r in records} == {"auto"}
    # queued prompts survive a restart of the stack's Redis: what status reports of it
    said = stack.exec(
        "web", "python", "-c", "from toolfleet import Fleet; print(Fleet().persistence())"
    )
    print(f"Redis: {said.strip()}")
    assert said.startswith("persistent")


def test_a_prompt_sees_no_secret_and_cannot_reach_redis(stack: Stack) -> None:
    probe = (
        "env; cat /proc/1/environ; ls /proc | grep -c '^[0-9]'; "
        "(exec 3<>/dev/tcp/redis/6379) 2>/dev/null && echo REACHED-REDIS || echo no-redis"
    )
    out = stack.exec("web", "toolfleet", "submit", "--profile", "bash", "--wait", probe)
    print(f"a bash prompt's view: {len(out.splitlines())} lines, {out.strip().splitlines()[-1]}")
    assert stack.env["REDIS_PASSWORD"] not in out
    assert "TOOLFLEET_BROKER_URL" not in out
    assert "REACHED-REDIS" not in out and out.strip().endswith("no-redis")


def test_a_worker_killed_mid_prompt_comes_back_and_the_prompt_is_answered_once(
    stack: Stack,
) -> None:
    (bash,) = stack.containers("worker-bash")
    answer: list[str] = []
    submit = subprocess.Popen(
        [
            stack.engine,
            "exec",
            next(c for c in stack.containers("web")).name,
            "toolfleet",
            "submit",
            "--profile",
            "bash",
            "--wait",
            "sleep 4; echo answered-after-the-kill",
        ],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reader = threading.Thread(target=lambda: answer.append(submit.communicate()[0]))
    reader.start()
    eventually(lambda: _workers(stack, "bash", "busy"), 60, "the bash worker busy")
    killed = time.monotonic()
    stack.crash(bash)
    # the restart policy brings it back; the prompt is delivered again to it
    eventually(lambda: stack.containers("worker-bash")[0].running, 120, "worker-bash back")
    reader.join(300)
    took = time.monotonic() - killed
    print(f"worker-bash SIGKILLed mid-prompt: back and answered {took:.0f} s later")
    stack.figures["killed mid-prompt to answered"] = f"{took:.0f} s"
    assert submit.returncode == 0, answer
    assert answer[0].strip().splitlines() == ["answered-after-the-kill"]
    eventually(lambda: len(_workers(stack, "bash")) == 1, 120, "one ready bash instance")


def test_scaling_a_worker_service_is_followed_by_status(stack: Stack) -> None:
    for count in (3, 1):
        stack.scale("worker-python", count)
        eventually(
            lambda n=count: len(_workers(stack, "python")) == n and len(stack.status()) == n + 2,
            180,
            lambda n=count: f"status after scaling to {n}: {_workers(stack, 'python')}",
            interval=1,
        )
        print(f"worker-python scaled to {count}: status lists {_workers(stack, 'python')}")


def test_down_is_quick_and_leaves_nothing(stack: Stack) -> None:
    # the worst order: Redis goes first, and everything else stops without it. Quick means
    # every process ends on its SIGTERM: none is left for the engine's SIGKILL (exit 137)
    # at the end of the grace period. Time is a figure only: these machines are slow at times.
    (redis,) = stack.containers("redis")
    started = time.monotonic()
    stack.engine_run("stop", "--time", "30", redis.name)
    stack.compose("stop", "--timeout", "30", timeout=600)
    stopped = time.monotonic() - started
    exits = {
        c.name: stack.engine_run("inspect", "--format", "{{.State.ExitCode}}", c.name).strip()
        for c in stack.containers()
    }
    stack.down()
    took = time.monotonic() - started
    stack.figures["stop, Redis stopped first"] = f"{stopped:.1f} s"
    stack.figures["stop and down, Redis stopped first"] = f"{took:.1f} s"
    left = stack.containers()
    volumes = stack.engine_run("volume", "ls", "--format", "{{.Name}}").split()
    networks = stack.engine_run("network", "ls", "--format", "{{.Name}}").split()
    ours = [n for n in volumes + networks if n.startswith(stack.project)]
    print(f"exit codes after stop: {exits}")
    print(
        f"stop and down took {took:.1f} s; left: {left or 'no container'}, "
        f"{ours or 'no volume or network'}"
    )
    print("figures: " + "; ".join(f"{k} {v}" for k, v in stack.figures.items()))
    assert exits and all(code != "137" for code in exits.values()), f"SIGKILLed: {exits}"
    assert left == [] and ours == []

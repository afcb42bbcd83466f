"""Agents through their own protocols (Claude Code, Gemini CLI, Codex): start to ready,
toolfleet's per-prompt overhead, memory, and a rollout vs the CLI's one-shot mode.

Run: .venv/bin/python bench/agents.py [--agents claude gemini codex] [--files 24]
Needs the CLIs in .agents (scripts/agents-install). For each agent, in one process, one
private Redis and the agent's fake model server from tests/programs:

1. start to ready: the agent process started and its protocol's handshake done
   (``AgentInstance.start``), median of 3.
2. per-prompt overhead: ``fleet.submit("hello").get()`` through one worker, against
   the same CLI driven directly through its protocol in this process plus a bare Celery
   no-op task (the queue's own round trip), p50 over interleaved rounds; target <= 1.10.
3. RSS of one instance (the agent's process).
4. rollout: ``--files`` files of a git repository, one step ('Add a "# DOC_ID..."')
   each, through 3 workers of a worktree profile with every change applied as it
   completes, against the CLI's one-shot mode once per file, one after another
   (``claude -p``, ``gemini -p``, ``codex exec``); items/s and the ratio, target >= 3.
   The one-shot runs get the instances' settings (Codex: toolfleet's config.toml and
   ``--ephemeral``); Codex's is also run as installed (its default config).
5. the ceiling of this machine for that rollout: the same items on 3 instances driven
   in this process (a thread each), a new conversation per item, in one checkout: no
   queue, no worktree, no change record; items/s against the same one-shot baseline.

Figures go to bench/out/agents.json.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import BENCH, Procs, stats, timed, with_redis

from toolfleet import Fleet
from toolfleet.client.applier import Applier
from toolfleet.client.bulk import run_map
from toolfleet.client.items import expand_steps
from toolfleet.profiles import BUILTIN_PROFILES, Profile
from toolfleet.tool.agent import AgentInstance
from toolfleet.tool.codex import codex_config
from toolfleet.tool.factory import make_instance
from toolfleet.tool.interface import Instance

ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from tests.programs import fake_anthropic, fake_gemini, fake_responses  # noqa: E402

AGENTS = ROOT / ".agents" / "node_modules" / ".bin"
STEP = 'Add a "# DOC_ID: {stem}" header line to {path}'
WORKERS = 3


def servers() -> dict[str, tuple[Callable[[int], Any], Callable[[int], dict[str, str]]]]:
    return {
        "claude": (lambda p: fake_anthropic.serve(p), fake_anthropic.claude_env),
        "gemini": (lambda p: fake_gemini.serve(p), fake_gemini.gemini_env),
        "codex": (lambda p: fake_responses.serve(p), fake_responses.codex_env),
    }


def one_shot(agent: str, message: str, workdir: Path, ephemeral: bool = True) -> list[str]:
    """The CLI's own one-shot command for ``message`` (what one scripts without toolfleet);
    ``ephemeral``: Codex keeps no session file, as the instances' threads do not."""
    binary = str(AGENTS / agent)
    if agent == "claude":
        return [binary, "-p", message, "--permission-mode", "acceptEdits"]
    if agent == "gemini":
        return [binary, "-p", message, "--yolo"]
    kept = ["--ephemeral"] if ephemeral else []
    return [binary, "exec", *kept, "--skip-git-repo-check", "-C", str(workdir), message]


def one_shots(
    agent: str, shot: Path, names: list[str], env: dict[str, str], ephemeral: bool = True
) -> dict[str, float]:
    """The one-shot command once per file of ``names`` in ``shot``, one after another."""
    started = time.perf_counter()
    for name in names:
        message = STEP.format(stem=Path(name).stem, path=name)
        subprocess.run(
            one_shot(agent, message, shot, ephemeral),
            cwd=shot,
            env=env,
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    elapsed = time.perf_counter() - started
    assert headers_ok(shot, names) == len(names), "the one-shot runs did not edit"
    return {"files": len(names), "seconds": elapsed, "items_per_s": len(names) / elapsed}


def make_repo(root: Path, files: int) -> list[str]:
    (root / "src").mkdir(parents=True)
    names = [f"src/m{i:03d}.py" for i in range(files)]
    for i, name in enumerate(names):
        (root / name).write_text(f'"""Module {i}."""\n\nVALUE = {i}\n', encoding="utf-8")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.email=b@example.com", "-c", "user.name=b", "commit", "-qm", "tree"],
    ):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return names


def headers_ok(root: Path, names: list[str]) -> int:
    return sum((root / n).read_text().startswith(f"# DOC_ID: {Path(n).stem}\n") for n in names)


def ceiling(profile: Profile, root: Path, files: int) -> dict[str, float]:
    """The rollout's items on WORKERS instances driven directly, a thread each, a new
    conversation per item (a restart where the protocol has no reset): the agents' own
    cost, what no orchestrator on this machine beats."""
    names = make_repo(root, files)
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in names:
        todo.put(name)
    instances = [make_instance(profile, cwd=str(root)) for _ in range(WORKERS)]
    for inst in instances:
        inst.start()

    def drive(inst: Instance) -> None:
        while True:
            try:
                name = todo.get_nowait()
            except queue.Empty:
                return
            if not inst.reset():
                inst.close()
                inst.start()
            answer = inst.ask(STEP.format(stem=Path(name).stem, path=name))
            assert answer.ok, answer.output

    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=drive, args=(inst,)) for inst in instances]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        for inst in instances:
            inst.close()
            shutil.rmtree(getattr(inst, "instance_dir", ""), ignore_errors=True)
    assert headers_ok(root, names) == files, "the directly driven instances did not edit"
    return {"files": files, "seconds": elapsed, "items_per_s": files / elapsed}


def bench_agent(agent: str, files: int, rounds: int) -> dict[str, Any]:
    serve, env_of = servers()[agent]
    server, thread = serve(0)
    base = Path(tempfile.mkdtemp(prefix=f"toolfleet-bench-{agent}-"))
    env = {**env_of(server.port), "PATH": f"{AGENTS}{os.pathsep}{os.environ['PATH']}"}
    profile = BUILTIN_PROFILES[agent].model_copy(
        update={"env": {**BUILTIN_PROFILES[agent].env, **env}}
    )
    result: dict[str, Any] = {}
    try:
        # 1 and 3: start to ready, memory
        starts, rss = [], []
        for _ in range(3):
            inst = make_instance(profile, cwd=str(base))
            assert isinstance(inst, AgentInstance)
            started = time.perf_counter()
            inst.start()
            starts.append(time.perf_counter() - started)
            inst.ask("hello")
            rss.append(inst.snapshot().rss_bytes or 0)
            inst.close()
            shutil.rmtree(inst.instance_dir, ignore_errors=True)
        result["start_to_ready_s"] = statistics.median(starts)
        result["rss_mib"] = statistics.median(rss) / 2**20

        repo = base / "repo"
        names = make_repo(repo, files)
        profiles = base / "profiles.toml"
        # the per-prompt worker's agent works where the directly driven one does (an
        # agent in a git checkout does more a turn than one in a plain directory)
        profiles.write_text(
            f'[profiles.{agent}-wt]\nextends = "{agent}"\nworkspace = "worktree"\nrepo = "{repo}"\n'
            f'[profiles.{agent}-rt]\nextends = "{agent}"\ncwd = "{base}"\n'
        )
        with with_redis() as settings:
            settings = settings.model_copy(update={"profiles": profiles})
            with Procs(settings) as procs, Fleet(settings) as fleet:
                procs.extra_env = {**env, "TOOLFLEET_PROFILES": str(profiles)}
                # 2: overhead per prompt, one worker, interleaved with the baselines
                procs.toolfleet_worker(f"{agent}-rt", f"{agent}-rt")
                procs.noop_worker("bench-noop")
                procs.wait_toolfleet(fleet, 1, timeout=300)
                noop_app = __import__("noop_app").app
                noop_app.conf.update(
                    broker_url=settings.broker_url, result_backend=settings.broker_url
                )
                while not noop_app.control.ping(timeout=0.5):
                    time.sleep(0.2)
                direct = make_instance(profile, cwd=str(base))
                direct.start()
                fns = {
                    "toolfleet": lambda: fleet.submit("hello", f"{agent}-rt").get(timeout=60),
                    "celery_noop": lambda: noop_app.send_task("bench.noop", queue="bench.noop").get(
                        timeout=30
                    ),
                    "direct": lambda: direct.ask("hello"),
                }
                samples: dict[str, list[float]] = {name: [] for name in fns}
                for fn in fns.values():
                    for _ in range(3):
                        fn()
                for _ in range(rounds):
                    for name, fn in fns.items():
                        samples[name] += [timed(fn) for _ in range(5)]
                direct.close()
                shutil.rmtree(direct.instance_dir, ignore_errors=True)  # type: ignore[attr-defined]
                figures = {name: stats(values) for name, values in samples.items()}
                baseline = figures["celery_noop"]["p50"] + figures["direct"]["p50"]
                result["per_prompt_ms"] = figures
                result["overhead_ratio_p50"] = figures["toolfleet"]["p50"] / baseline
                # 4: the rollout through 3 instances in worktrees, applied as it goes
                for i in range(WORKERS):
                    procs.toolfleet_worker(f"{agent}-wt", f"{agent}-wt{i}")
                fleet.wait_ready(WORKERS, profile=f"{agent}-wt", timeout=300)
                started = time.perf_counter()
                items = expand_steps([STEP], names)
                # as `toolfleet map --apply` runs it: the default in-flight count, each
                # change merged as its item completes, in a thread beside the run
                with Applier(fleet.changes, repo=repo) as applier:
                    for outcome in run_map(fleet, items, profile=f"{agent}-wt", in_flight=8):
                        assert outcome.ok, (outcome.key, outcome.error)
                        assert outcome.changes is not None and outcome.changes.commit
                        applier.add(outcome.changes.id)
                applied = len(applier.result.applied)
                elapsed = time.perf_counter() - started
                assert applied == files and headers_ok(repo, names) == files
                result["rollout"] = {
                    "files": files,
                    "seconds": elapsed,
                    "items_per_s": files / elapsed,
                }
        # the baseline: the one-shot command per file, one after another
        shot = base / "oneshot"
        shot_names = make_repo(shot, files)
        shot_env = {**os.environ, **env, "HOME": str(base / "home")}
        (base / "home").mkdir()
        if agent == "gemini":
            fake_settings = base / "home" / ".gemini" / "settings.json"
            fake_settings.parent.mkdir()
            fake_settings.write_text('{"security":{"auth":{"selectedType":"gemini-api-key"}}}')
            shot_env.update(GEMINI_CLI_TRUST_WORKSPACE="true", GEMINI_CLI_NO_RELAUNCH="1")
        if agent == "codex":
            (base / "home" / ".codex").mkdir()
            (base / "home" / ".codex" / "config.toml").write_text(codex_config(shot_env))
        if agent == "claude":
            shot_env.update(profile.env)
            shot_env.update(HOME=str(base / "home"), CLAUDE_CONFIG_DIR=str(base / "home/.claude"))
        result["one_shot"] = one_shots(agent, shot, shot_names, shot_env)
        if agent == "codex":  # also as installed: its default config, session files kept
            defaults = base / "defaults"
            (defaults / ".codex").mkdir(parents=True)
            # only what reaching the fake model needs: toolfleet's settings left out
            ours = ("allow_login_shell", "shell_snapshot", "[features]")
            config = codex_config(shot_env).splitlines()
            (defaults / ".codex" / "config.toml").write_text(
                "\n".join(line for line in config if not line.startswith(ours))
            )
            names = make_repo(base / "oneshot-defaults", files)
            plain = one_shots(
                agent,
                base / "oneshot-defaults",
                names,
                {**shot_env, "HOME": str(defaults)},
                ephemeral=False,
            )
            result["one_shot_defaults"] = plain
            result["rollout_ratio_defaults"] = (
                result["rollout"]["items_per_s"] / plain["items_per_s"]
            )
        result["rollout_ratio"] = (
            result["rollout"]["items_per_s"] / result["one_shot"]["items_per_s"]
        )
        result["ceiling"] = ceiling(profile, base / "ceiling", files)
        result["ceiling_ratio"] = (
            result["ceiling"]["items_per_s"] / result["one_shot"]["items_per_s"]
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        shutil.rmtree(base, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=["claude", "gemini", "codex"])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "agents.json")
    args = parser.parse_args()
    # one process an agent: Celery apps keep their first broker; results are merged
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if len(args.agents) > 1:
        for agent in args.agents:
            argv = [sys.executable, __file__, "--agents", agent, "--files", str(args.files)]
            subprocess.run(
                [*argv, "--rounds", str(args.rounds), "--out", str(args.out)], check=True
            )
        return
    for agent in args.agents:
        if not (AGENTS / agent).is_file():
            sys.exit(f"no {agent} in .agents: run scripts/agents-install first")
        results[agent] = bench_agent(agent, args.files, args.rounds)
        print(agent, json.dumps(results[agent], indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The compose stack of docker-compose.yml, driven through the engine's compose command:
build, up, the state and health of each container, commands in them, down."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolfleet.cli.local import free_port

__all__ = ["REPO", "Container", "Stack"]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Container:
    """One container of the stack."""

    name: str
    service: str
    running: bool


@dataclass
class Stack:
    """The stack under the project name ``project``, with its own secrets and ports."""

    engine: str
    command: list[str]
    env: dict[str, str]
    #: the git repository worker-aider works in (AIDER_REPO_DIR)
    repo: Path
    project: str = "toolfleet-test"
    #: what was measured, printed at the end
    figures: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> Stack:
        env = dict(os.environ)
        env.update(
            REDIS_PASSWORD=secrets.token_hex(16),
            FLOWER_USER="admin",
            FLOWER_PASSWORD=secrets.token_hex(8),
            WEB_TOKEN=secrets.token_hex(16),
            FLOWER_PORT=str(free_port()),
            WEB_PORT=str(free_port()),
            EXPORTER_PORT=str(free_port()),
            TOOLFLEET_IMAGE="toolfleet-test:latest",
            TOOLFLEET_AIDER_IMAGE="toolfleet-test-aider:latest",
        )
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.is_file() and "BUILD_CA_BUNDLE" not in env:
            env["BUILD_CA_BUNDLE"] = str(bundle)
        repo = _repository(Path(tempfile.mkdtemp(prefix="toolfleet-compose-repo-")))
        env.update(  # the real aider in worker-aider, on the scripted model of fake-model.yml
            AIDER_REPO_DIR=str(repo),
            AIDER_MODEL="openai/gpt-4o-mini",
            AIDER_OPENAI_API_BASE="http://fake-model:8000/v1",
            OPENAI_API_KEY="fake",
            AIDER_EDIT_FORMAT="whole",
        )
        return cls(env["COMPOSE_ENGINE"], shlex.split(env["COMPOSE_COMMAND"]), env, repo)

    # ---- commands --------------------------------------------------------------
    def _run(
        self, argv: list[str], timeout: float, check: bool
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            argv, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode:
            out = done.stdout + done.stderr
            raise AssertionError(f"{shlex.join(argv)} exited {done.returncode}:\n{out[-3000:]}")
        return done

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        """Run the compose command on the stack; its stdout."""
        files = ["-f", "docker-compose.yml", "-f", "tests/compose/fake-model.yml"]
        argv = [*self.command, "-p", self.project, *files, "--profile", "aider", *args]
        return self._run(argv, timeout, check).stdout

    def engine_run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        """Run the engine (podman, docker) itself; its stdout."""
        return self._run([self.engine, *args], timeout, check).stdout

    def build(self) -> None:
        started = time.monotonic()
        try:
            self.compose("build", timeout=1800)
        except AssertionError as exc:  # PyPI through the proxy fails now and then: once more
            print(f"the build failed; once more (the layers built are kept): {str(exc)[-300:]}")
            self.compose("build", timeout=1800)
        self.figures["build"] = f"{time.monotonic() - started:.0f} s"
        for image in ("toolfleet-test:latest", "toolfleet-test-aider:latest"):
            size = self.engine_run("image", "inspect", "--format", "{{.Size}}", image).strip()
            self.figures[f"image {image}"] = f"{int(size) / 1e6:.0f} MB"

    def up(self, *args: str) -> None:
        self.compose("up", "-d", *args)

    def clear(self) -> list[str]:
        """Remove every container, volume and network of the project (what an earlier
        run left); their names."""
        names = [c.name for c in self.containers()]
        if names:
            self.engine_run("rm", "--force", *names)
        for kind in ("volume", "network"):
            listed = self.engine_run(kind, "ls", "--format", "{{.Name}}").split()
            ours = [n for n in listed if n.startswith(f"{self.project}_")]
            if ours:
                self.engine_run(kind, "rm", *ours, check=False)
                names += ours
        return names

    def forget(self) -> None:
        """Remove the stack's repository."""
        shutil.rmtree(self.repo.parent, ignore_errors=True)

    def down(self) -> float:
        """``down --volumes``; how long it took."""
        started = time.monotonic()
        self.compose("down", "--volumes", "--timeout", "30", timeout=300, check=False)
        took = time.monotonic() - started
        self.figures.setdefault("down", f"{took:.1f} s")
        return took

    # ---- state -----------------------------------------------------------------
    def containers(self, service: str | None = None) -> list[Container]:
        out = self.engine_run(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--format",
            "json",
        )
        rows = (
            json.loads(out or "[]")
            if out.strip().startswith("[")
            else [json.loads(line) for line in out.splitlines() if line.strip()]
        )
        found = []
        for row in rows:
            names = row.get("Names")
            name = names[0] if isinstance(names, list) else str(names)
            labels = row.get("Labels") or {}
            if isinstance(labels, str):  # docker: "k=v,k=v"
                labels = dict(kv.split("=", 1) for kv in labels.split(",") if "=" in kv)
            svc = labels.get("com.docker.compose.service", "")
            state = str(row.get("State", "")).lower()
            if service is None or svc == service:
                found.append(Container(name, svc, state == "running"))
        return sorted(found, key=lambda c: c.name)

    def healthy(self, container: Container) -> bool:
        """Its healthcheck passes now. podman without systemd never runs healthchecks by
        itself: they are run here; Docker's are read."""
        if self.engine == "podman":
            return (
                self._run(["podman", "healthcheck", "run", container.name], 60, False).returncode
                == 0
            )
        status = self.engine_run(
            "inspect", "--format", "{{.State.Health.Status}}", container.name, check=False
        )
        return status.strip() == "healthy"

    def crash(self, container: Container) -> None:
        """SIGKILL the container's processes from the host, as a crash would (a ``kill``
        through the engine counts as a stop by the user: no restart follows)."""
        pid = self.engine_run("inspect", "--format", "{{.State.Pid}}", container.name).strip()
        os.kill(int(pid), signal.SIGKILL)

    def scale(self, service: str, count: int) -> None:
        """Run ``count`` containers of ``service``. podman-compose's ``up --scale`` adds
        containers but never removes them: there, the ones past ``count`` are stopped and
        removed, as docs/deploy.md tells its users."""
        self.up("--scale", f"{service}={count}", "--no-recreate")
        if self.engine != "podman":
            return
        extra = self.containers(service)[count:]
        for container in extra:
            self.engine_run("stop", "--time", "30", container.name)
            self.engine_run("rm", container.name)

    def exec(self, service: str, *argv: str, timeout: float = 120) -> str:
        """Run ``argv`` in the first running container of ``service``; its stdout."""
        first = next(c for c in self.containers(service) if c.running)
        return self.engine_run("exec", first.name, *argv, timeout=timeout)

    def status(self) -> list[dict[str, object]]:
        """``toolfleet status --json`` as the stack's web container sees the fleet."""
        records: list[dict[str, object]] = json.loads(
            self.exec("web", "toolfleet", "status", "--json")
        )
        return records


def _repository(folder: Path) -> Path:
    """A git repository with one committed file, a.py, owned by the image's user."""
    repo = folder / "repo"
    repo.mkdir()
    (repo / "a.py").write_text('def a():\n    return "a"\n', encoding="utf-8")
    ident = ["-c", "user.name=toolfleet test", "-c", "user.email=test@toolfleet.invalid"]
    for argv in (["init", "-q", "-b", "main"], ["add", "a.py"], [*ident, "commit", "-qm", "a"]):
        subprocess.run(["git", *argv], cwd=repo, check=True, capture_output=True)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, 1000, 1000, follow_symlinks=False)  # the image's uid
    return repo

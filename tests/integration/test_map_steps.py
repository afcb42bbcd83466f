"""Multi-step items on real bash workers: one instance per item, in order, reset between
items, stopped at the first failing step, and retried whole when a worker dies."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from click.testing import CliRunner

from toolfleet.cli.map import map_command
from toolfleet.client.items import MapOutcome

from .procs import Workers, env_for, fleet_thread

STEPS = [
    'echo "before: ${x:-unset}"',  # a reset instance: nothing left from the last item
    "x={stem}; f={path!q}",
    'n=$(wc -l < "$f")',
    'echo "$x:$n"',  # set by earlier steps: one shell (the instance) ran every step
]


def files(tmp_path: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = tmp_path / f"f{i}.txt"
        path.write_text("line\n" * (i + 1), encoding="utf-8")
        paths.append(str(path))
    return paths


def by_key(outcomes: list[MapOutcome]) -> dict[str, MapOutcome]:
    return {o.key: o for o in outcomes}


def test_each_items_steps_run_in_order_on_one_reset_instance(
    workers: Workers, tmp_path: Path
) -> None:
    workers.wait_ready(workers.start("bash", 2))
    paths = files(tmp_path, 8)
    outcomes = by_key(list(workers.fleet.map(paths, "bash", steps=STEPS, in_flight=4)))
    assert set(outcomes) == set(paths)
    used = set()
    for i, path in enumerate(paths):
        o = outcomes[path]
        assert o.ok and o.error is None and o.result is not None, o
        assert [s.output for s in o.steps[:1]] == ["before: unset"]
        assert len(o.steps) == len(STEPS) and all(s.ok for s in o.steps)
        assert o.result.output == f"f{i}:{i + 1}"
        assert {(s.worker, s.pid, s.session) for s in o.steps} == {
            (o.result.worker, o.result.pid, o.result.session)
        }
        assert [s.seq for s in o.steps] == list(range(len(STEPS)))
        used.add(o.result.worker)
    assert len(used) == 2  # both instances took items


def test_an_item_stops_at_its_first_failing_step(workers: Workers, tmp_path: Path) -> None:
    workers.wait_ready(workers.start("bash"))
    paths = files(tmp_path, 3)
    steps = ["x={stem}", 'test "$x" != f1', "echo done $x"]
    journal = tmp_path / "journal.jsonl"
    runner = CliRunner(env=env_for(workers.settings))
    args = [
        "-p",
        "bash",
        "--journal",
        str(journal),
        "--json",
        *[a for s in steps for a in ("-s", s)],
    ]
    result = runner.invoke(map_command, [*args, *paths])
    assert result.exit_code == 1, result.output
    records = {r["key"]: r for r in map(_json, result.stdout.splitlines())}
    assert records[paths[0]]["ok"] and records[paths[2]]["ok"]
    assert [s["output"] for s in records[paths[0]]["steps"]] == ["", "", "done f0"]
    failed = records[paths[1]]
    assert not failed["ok"] and failed["error_type"] == "ToolError"
    assert failed["error"] == "step 2 of 3: exit status 1"
    assert len(failed["steps"]) == 2  # the third step never ran
    # resume: only the failed item runs again (and fails again the same way)
    again = runner.invoke(map_command, [*args, *paths])
    keys = [_json(line)["key"] for line in again.stdout.splitlines()]
    assert again.exit_code == 1 and keys == [paths[1]]


def test_a_worker_killed_mid_item_is_retried_whole_elsewhere_and_nothing_is_lost(
    workers: Workers, tmp_path: Path
) -> None:
    names = workers.start("bash", 2)
    workers.wait_ready(names)
    paths = files(tmp_path, 6)
    steps = ["x={stem}", "sleep 1", 'echo "{stem}" >> {path!q}.done; echo "$x"']
    run = workers.fleet.map(paths, "bash", steps=steps, in_flight=2, retries=2)
    outcomes: list[MapOutcome] = []
    driver = fleet_thread(workers.fleet, lambda: outcomes.extend(run))
    driver.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None:  # kill a worker while it runs an item's step
        busy = [h for h in workers.fleet.status() if h.state == "busy"]
        if busy:
            victim = busy[0].worker.split("@")[0]
            workers.stop(victim, signal.SIGKILL)
        assert time.monotonic() < deadline, "no worker got busy"
        time.sleep(0.05)
    driver.join(120)
    assert not driver.is_alive(), "the run did not end"
    done = by_key(outcomes)
    assert set(done) == set(paths)
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]
    survivor = next(n for n in names if n != victim)
    assert all(o.result is not None and o.result.worker.startswith(survivor) for o in outcomes)
    retried = [o for o in outcomes if o.attempts > 1]
    assert retried, "the killed worker's item was not retried"
    for path in paths:  # every item's last step ran; a half-done item's steps ran again whole
        marks = Path(path + ".done").read_text(encoding="utf-8").split()
        assert marks and set(marks) == {Path(path).stem}
        assert done[path].result is not None and done[path].result.output == Path(path).stem


def _json(line: str) -> dict:  # type: ignore[type-arg]
    import json

    return dict(json.loads(line))

"""pytest-celery's in-process worker (threads pool) runs the real bootstep and tool."""

from __future__ import annotations

from toolfleet import Fleet, Settings
from toolfleet.workers import state

from ..helpers import eventually


def test_session_worker_serves_prompts_with_a_real_tool(celery_session_worker, celery_config):
    sup = state.current()
    assert sup.state == "ready" and sup.instance.alive()
    with Fleet(Settings(broker_url=celery_config["broker_url"])) as fleet:
        assert fleet.submit("6 * 7", "python").get(timeout=30).output == "42"
        # counters reach the health record by the next heartbeat (interval 0.5 s)
        record = eventually(
            lambda: (r := fleet.status("python")[0]).prompts_served >= 1 and r,
            5,
            lambda: f"prompts served in {fleet.status('python')}",
            interval=0.1,
        )
        assert record.pid == sup.instance.pid

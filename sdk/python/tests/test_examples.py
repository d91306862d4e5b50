"""examples/python: the SDK agent and the raw-stub agent, each serving real tasks."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, SDK, WAIT

EXAMPLES = os.path.join(ROOT, "examples", "python")


@pytest.mark.parametrize("script,agent_id", [("sdk_agent.py", "py_example_sdk"), ("raw_agent.py", "py_example_raw")])
def test_example_serves_tasks(coordinator, script, agent_id):
    env = dict(os.environ, PYTHONPATH=SDK, BATON_ADDRESS=coordinator.address, BATON_AGENT_ID=agent_id, BATON_CA=coordinator.pem("ca.pem"), BATON_CERT=coordinator.pem(f"{agent_id}.pem"), BATON_KEY=coordinator.pem(f"{agent_id}.key"))
    proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout.readline().startswith(b"welcome"), "the example did not connect"
        coordinator.submit("plain", {"numbers": [1, 2, 3]}, target={"agent_id": agent_id})
        coordinator.submit("sealed", {"numbers": [4]}, sensitive={"token": "x"}, target={"agent_id": agent_id})
        plain, sealed = coordinator.wait_task("plain"), coordinator.wait_task("sealed")
        assert (plain.result["sum"], plain.result["by"], plain.result["secret_seen"]) == (6, agent_id, False)
        assert (sealed.result["sum"], sealed.result["secret_seen"]) == (4, True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

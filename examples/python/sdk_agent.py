#!/usr/bin/python3
"""A baton agent on the Python SDK (sdk/python): it sums the numbers of each task's input.

    PYTHONPATH=sdk/python BATON_AGENT_ID=task_executor_1 BATON_CA=certs/ca.pem \
      BATON_CERT=certs/task_executor_1.pem BATON_KEY=certs/task_executor_1.key \
      /usr/bin/python3 examples/python/sdk_agent.py
"""

import logging
import os
import signal

from baton_agent import Agent

logging.basicConfig(level=logging.INFO)
env = os.environ
agent = Agent(env.get("BATON_ADDRESS", "localhost:50051"), env["BATON_AGENT_ID"], ca=env["BATON_CA"], cert=env["BATON_CERT"], key=env["BATON_KEY"], capabilities=["python"], wait_for_coordinator=True)


def handle(d):
    """One directive: the returned dict is the task's result; an exception is its failure."""
    d.progress(50)  # progress also extends the directive's lease
    if d.cancelled.is_set():
        raise RuntimeError(d.cancel_reason)
    return {"sum": sum(d.input.get("numbers", [])), "by": agent.agent_id, "secret_seen": d.sensitive_input is not None}


signal.signal(signal.SIGTERM, lambda *_: agent.close())
print("welcome", agent.connect().session_id, flush=True)
agent.run(handle)

"""The Python SDK against a real coordinator: tasks, resume, key rotation, sealed input, restart."""

import threading
import time
from collections import Counter

import grpc
import pytest
from conftest import WAIT, wait_until

from baton_agent import BatonAgentError
from baton_agent._gen.baton.v1 import common_pb2, control_pb2


def test_tasks_completed(coordinator, agents):
    agent = coordinator.agent("py_1", capabilities=["python"])
    agents.append(agent)
    welcome = agent.connect(timeout=WAIT)
    # The timers an agent reads instead of hard-coding them.
    assert welcome.heartbeat_misses == 3 and welcome.HasField("lease") and welcome.HasField("sync_interval") and welcome.HasField("keys")
    threading.Thread(target=agent.run, args=(lambda d: {"sum": sum(d.input["numbers"])},), daemon=True).start()
    for i in range(5):
        coordinator.submit(f"sum-{i}", {"numbers": [i, i, 1]}, required_capabilities=["python"])
    for i in range(5):
        assert coordinator.wait_task(f"sum-{i}").result["sum"] == 2 * i + 1
    wait_until(lambda: agent.unacknowledged_completions == 0, "every completion acknowledged")


def test_failure_on_exception_and_iterator_mode(coordinator, agents):
    agent = coordinator.agent("py_1", capabilities=["python"])
    agents.append(agent)
    agent.connect(timeout=WAIT)

    def serve():
        for d in agent.directives():
            if d.input.get("refuse"):
                d.reject("this agent refuses it")
                continue
            d.accept()
            d.progress(50)
            d.fail("no can do", code="bad_input", retryable=False)

    threading.Thread(target=serve, daemon=True).start()
    coordinator.submit("fails", {"x": 1}, required_capabilities=["python"])
    task = coordinator.wait_task("fails", control_pb2.TASK_STATE_DEAD_LETTERED)
    assert "no can do" in task.reason or any("no can do" in a.reason for a in task.attempts)


def test_refused_certificate_name_is_final(coordinator):
    # py_2's certificate may not connect as py_1: PERMISSION_DENIED, and no retry.
    from baton_agent import Agent

    agent = Agent(coordinator.address, "py_1", ca=coordinator.pem("ca.pem"), cert=coordinator.pem("py_2.pem"), key=coordinator.pem("py_2.key"))
    with pytest.raises(BatonAgentError) as err:
        agent.connect(timeout=WAIT)
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert agent.wait(WAIT).code == grpc.StatusCode.PERMISSION_DENIED


def test_cut_connection_resumed_nothing_lost_or_run_twice(coordinator, agents, proxy_factory):
    proxy = proxy_factory(coordinator.port)
    runs = Counter()
    release = threading.Event()
    lock = threading.Lock()

    def handler(d):
        with lock:
            runs[d.task_id] += 1
        release.wait(WAIT)
        return {"ok": True}

    agent = coordinator.agent("py_1", address=proxy.address, capabilities=["python"], max_in_flight=20, reconnect_initial=0.05, reconnect_max=0.5)
    agents.append(agent)
    first = agent.connect(timeout=WAIT)
    welcomes = []
    agent.on("welcome", welcomes.append)
    threading.Thread(target=agent.run, args=(handler,), daemon=True).start()
    ids = [f"cut-{i}" for i in range(10)]
    for tid in ids[:5]:
        coordinator.submit(tid, {"n": 1}, required_capabilities=["python"])
    wait_until(lambda: sum(runs.values()) == 5, "five tasks running")
    proxy.cut()
    # While the stream is down, more work is submitted; it waits for the resumed session.
    for tid in ids[5:]:
        coordinator.submit(tid, {"n": 1}, required_capabilities=["python"])
    wait_until(lambda: welcomes, "the agent to reconnect")
    assert welcomes[0].resumed and welcomes[0].session_id == first.session_id
    proxy.cut()
    wait_until(lambda: len(welcomes) >= 2, "the agent to reconnect a second time")
    release.set()
    for tid in ids:
        coordinator.wait_task(tid)
    assert all(runs[tid] == 1 for tid in ids), runs
    assert all(w.resumed for w in welcomes)


def test_an_attempt_without_welcome_is_given_up_and_dialled_again(coordinator, agents, proxy_factory):
    proxy = proxy_factory(coordinator.port)
    agent = coordinator.agent("py_2", address=proxy.address, reconnect_initial=0.02, reconnect_max=0.1, welcome_timeout=1.0)
    agents.append(agent)
    first = agent.connect(timeout=WAIT)
    ends, welcomes = [], []
    agent.on("reconnecting", lambda end, attempt, wait: ends.append(end))
    agent.on("welcome", welcomes.append)
    # New connections are accepted and then hear nothing; the live one is cut.
    proxy.blackhole()
    proxy.cut()
    wait_until(lambda: any("no Welcome from the coordinator within 1 s" in e.message for e in ends), "an attempt given up for want of a Welcome")
    assert all(e.code == grpc.StatusCode.UNAVAILABLE for e in ends if "no Welcome" in e.message)
    proxy.heal()
    wait_until(lambda: welcomes, "the agent to be back")
    assert welcomes[0].resumed and welcomes[0].session_id == first.session_id


def test_welcome_timeout_must_be_positive(coordinator):
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="welcome_timeout must be a positive number of seconds"):
            coordinator.agent("py_3", welcome_timeout=bad)


def test_key_rotation(coordinator_factory, agents):
    coordinator = coordinator_factory({"security": {"keyRotationMs": 1500, "keyGraceMs": 30000}, "session": {"heartbeatIntervalMs": 300}})
    agent = coordinator.agent("py_1", capabilities=["python"])
    agents.append(agent)
    welcome = agent.connect(timeout=WAIT)
    first_key = welcome.keys.keys[0].key_id
    threading.Thread(target=agent.run, args=(lambda d: {"n": d.input["n"]},), daemon=True).start()
    coordinator.submit("before", {"n": 1}, required_capabilities=["python"])
    coordinator.wait_task("before")
    wait_until(lambda: agent._keyring.current().key_id != first_key, "a key rotation to reach the agent")
    # Signed under the new key both ways.
    coordinator.submit("after", {"n": 2}, required_capabilities=["python"])
    assert coordinator.wait_task("after").result["n"] == 2


def test_sealed_input_opened_for_the_handler(coordinator, agents):
    agent = coordinator.agent("py_1", capabilities=["python"])
    agents.append(agent)
    agent.connect(timeout=WAIT)
    seen = []

    def handler(d):
        seen.append((d.input, d.sensitive_input, d.message.parameters.HasField("sealed")))
        return {"token_length": len(d.sensitive_input["token"])}

    threading.Thread(target=agent.run, args=(handler,), daemon=True).start()
    coordinator.submit("sealed", {"public": "yes"}, sensitive={"token": "s3cr3t"}, required_capabilities=["python"])
    assert coordinator.wait_task("sealed").result["token_length"] == 6
    assert seen == [({"public": "yes"}, {"token": "s3cr3t"}, True)]


def test_coordinator_restart_survived(coordinator, agents):
    agent = coordinator.agent("py_1", capabilities=["python"], reconnect_initial=0.05, reconnect_max=0.5)
    agents.append(agent)
    agent.connect(timeout=WAIT)
    release = threading.Event()
    runs = Counter()

    def handler(d):
        runs[d.task_id] += 1
        if d.task_id == "during":
            release.wait(WAIT)
        return {"task": d.task_id}

    threading.Thread(target=agent.run, args=(handler,), daemon=True).start()
    coordinator.submit("during", {"n": 1}, required_capabilities=["python"])
    wait_until(lambda: runs["during"] == 1, "the task to run")
    reconnected = threading.Event()
    agent.on("welcome", lambda w: reconnected.set())
    coordinator.stop()
    # The task finishes while no coordinator is there: its completion is kept until acknowledged.
    release.set()
    wait_until(lambda: agent.unacknowledged_completions == 1, "the completion to be kept while the coordinator is down")
    coordinator.start()
    assert reconnected.wait(WAIT), "the agent did not reconnect to the restarted coordinator"
    assert coordinator.wait_task("during").result["task"] == "during"
    assert runs["during"] == 1
    coordinator.submit("after-restart", {"n": 2}, required_capabilities=["python"])
    coordinator.wait_task("after-restart")
    wait_until(lambda: agent.unacknowledged_completions == 0, "every completion acknowledged")
    assert runs["after-restart"] == 1


def test_status_answered_and_drain_honoured(coordinator, agents):
    agent = coordinator.agent("py_1", capabilities=["python"])
    agents.append(agent)
    agent.connect(timeout=WAIT)
    release = threading.Event()
    threading.Thread(target=agent.run, args=(lambda d: release.wait(WAIT) and {"done": True},), daemon=True).start()
    coordinator.submit("busy", {"n": 1}, required_capabilities=["python"])
    control = coordinator.control()
    status = wait_until(lambda: (s := control.GetAgentStatus(control_pb2.GetAgentStatusRequest(agent_id="py_1"), timeout=10)).status.in_flight == 1 and s, "the agent to report one directive in flight")
    assert len(status.status.active_directives) == 1
    drains = []
    agent.on("drain", drains.append)
    control.DrainAgent(control_pb2.DrainAgentRequest(agent_id="py_1", reason="maintenance"), timeout=10)
    wait_until(lambda: drains, "the Drain to reach the agent")
    assert drains[0].reason == "maintenance"
    # Work it holds still finishes; it reports itself draining.
    release.set()
    coordinator.wait_task("busy")
    status = wait_until(lambda: (s := control.GetAgentStatus(control_pb2.GetAgentStatusRequest(agent_id="py_1"), timeout=10)).status.in_flight == 0 and s, "the agent to finish its work")
    assert status.status.state == common_pb2.AGENT_STATE_DRAINING
    # Undrained: the agent is told, and takes new work again (drained, it would defer it).
    undrains = []
    agent.on("undrain", undrains.append)
    control.UndrainAgent(control_pb2.UndrainAgentRequest(agent_id="py_1"), timeout=10)
    wait_until(lambda: undrains, "the withdrawn Drain to reach the agent")
    coordinator.submit("after-undrain", {"n": 2}, required_capabilities=["python"])
    coordinator.wait_task("after-undrain")
    status = control.GetAgentStatus(control_pb2.GetAgentStatusRequest(agent_id="py_1"), timeout=10)
    assert status.status.state == common_pb2.AGENT_STATE_ONLINE


def test_drain_with_reconnect_to_moves_the_agent(coordinator, agents, proxy_factory):
    proxy = proxy_factory(coordinator.port)
    agent = coordinator.agent("py_1", capabilities=["python"], reconnect_initial=0.05, reconnect_max=0.5)
    agents.append(agent)
    first = agent.connect(timeout=WAIT)
    welcomes = []
    agent.on("welcome", welcomes.append)
    threading.Thread(target=agent.run, args=(lambda d: {"at": agent.address},), daemon=True).start()
    coordinator.control().DrainAgent(control_pb2.DrainAgentRequest(agent_id="py_1", reason="move", reconnect_to=proxy.address), timeout=10)
    # Idle, it leaves at once for reconnect_to, with a new session there, and takes work again.
    wait_until(lambda: welcomes, "the agent to connect where the Drain sent it")
    assert agent.address == proxy.address and not welcomes[0].resumed and welcomes[0].session_id != first.session_id
    coordinator.submit("moved", {"n": 1}, required_capabilities=["python"])
    assert coordinator.wait_task("moved").result["at"] == proxy.address


def test_clock_skew_beyond_the_replay_window_is_refused(coordinator):
    agent = coordinator.agent("py_2", clock=lambda: time.time() + 3600)
    with pytest.raises(BatonAgentError) as err:
        agent.connect(timeout=WAIT)
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED and "clock skew" in err.value.message


def test_a_redelivered_directive_runs_once_and_is_acked_again(coordinator):
    import queue

    from baton_agent._gen.baton.v1 import coordination_pb2

    agent = coordinator.agent("py_3")
    agent._outbox = queue.Queue()
    d = coordination_pb2.CoordinationDirective(directive_id="0b9d7f0e-3c1a-4e8b-a6f2-5d4c3b2a1908", target_agent="py_3", action=1, sequence=4, attempt=1)
    d.parameters.assign_task.task_id = "t"
    agent._receive(d)
    received = agent._inbox.get_nowait()
    received.accept()
    again = coordination_pb2.CoordinationDirective()
    again.CopyFrom(d)
    again.attempt, again.sequence = 2, 9
    agent._receive(again)
    assert agent._inbox.empty(), "a duplicate reached the handler"
    acks = [r.directive_ack for _, r in list(agent._outbox.queue) if r.WhichOneof("kind") == "directive_ack"]
    assert [(a.attempt, a.sequence, a.outcome) for a in acks] == [(1, 4, coordination_pb2.ACK_OUTCOME_ACCEPTED), (2, 9, coordination_pb2.ACK_OUTCOME_ACCEPTED)]
    assert agent._last_sequence == 9

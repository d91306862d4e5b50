"""Fixtures: a real baton coordinator (test/python/coordinator.ts, started with node and
tsx), an operator's Control client, and a TCP proxy that can cut the agent's connection."""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import pytest

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(SDK))
sys.path.insert(0, SDK)

from baton_agent import Agent  # noqa: E402
from baton_agent._gen.baton.v1 import control_pb2, control_pb2_grpc  # noqa: E402

# The node that runs the tests (vitest passes its own), else the one on PATH.
NODE = os.environ.get("BATON_NODE", "node")
TSX = "file://" + os.path.join(ROOT, "node_modules", "tsx", "dist", "loader.mjs")
AGENTS = ["py_1", "py_2", "py_3", "py_example_sdk", "py_example_raw"]
# Generous: the machine is shared and loaded; a passing test waits on its event, never this long.
WAIT = float(os.environ.get("BATON_TEST_WAIT", "60"))


def wait_until(check, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Coordinator:
    """A coordinator process; restart() brings it back on the same port with the same journal."""

    def __init__(self, directory: str, config: dict):
        self.dir = directory
        self.config = config
        self.port = 0
        self.proc = None

    def start(self) -> "Coordinator":
        cmd = [NODE, "--import", TSX, os.path.join(ROOT, "test", "python", "coordinator.ts"), "--dir", self.dir, "--port", str(self.port), "--agents", ",".join(AGENTS), "--config", json.dumps(self.config)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(os.path.join(self.dir, "coordinator.log"), "ab"))
        ready, _, _ = select.select([self.proc.stdout], [], [], WAIT)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            with open(os.path.join(self.dir, "coordinator.log"), "rb") as f:
                raise AssertionError("the coordinator did not start: " + f.read()[-2000:].decode(errors="replace"))
        self.port = json.loads(line)["port"]
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    def pem(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def agent(self, agent_id: str, address: str = "", **options) -> Agent:
        return Agent(address or self.address, agent_id, ca=self.pem("ca.pem"), cert=self.pem(f"{agent_id}.pem"), key=self.pem(f"{agent_id}.key"), **options)

    def control(self):
        creds = grpc.ssl_channel_credentials(open(self.pem("ca.pem"), "rb").read(), open(self.pem("operator.key"), "rb").read(), open(self.pem("operator.pem"), "rb").read())
        return control_pb2_grpc.ControlStub(grpc.secure_channel(self.address, creds))

    def submit(self, task_id: str, input=None, sensitive=None, **spec) -> None:
        task = control_pb2.TaskSpec(task_id=task_id, **spec)
        if input is not None:
            task.input.update(input)
        if sensitive is not None:
            task.sensitive_input.update(sensitive)
        wait_until(lambda: self._try(lambda c: c.SubmitTask(control_pb2.SubmitTaskRequest(task=task), timeout=10)), f"task {task_id} to be submitted")

    def task(self, task_id: str):
        return self.control().GetTask(control_pb2.GetTaskRequest(task_id=task_id), timeout=10).task

    def wait_task(self, task_id: str, state=control_pb2.TASK_STATE_SUCCEEDED):
        def check():
            t = self._try(lambda c: c.GetTask(control_pb2.GetTaskRequest(task_id=task_id), timeout=10).task)
            return t if t is not None and t.state == state else None

        return wait_until(check, f"task {task_id} to be {control_pb2.TaskState.Name(state)}")

    def _try(self, fn):
        # A coordinator coming back after a restart answers UNAVAILABLE for a moment.
        try:
            return fn(self.control())
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                return None
            raise


@pytest.fixture
def coordinator_factory():
    started = []

    def make(config=None) -> Coordinator:
        c = Coordinator(tempfile.mkdtemp(prefix="baton-py-"), config or {}).start()
        started.append(c)
        return c

    yield make
    for c in started:
        c.stop()


@pytest.fixture
def coordinator(coordinator_factory) -> Coordinator:
    return coordinator_factory()


@pytest.fixture
def agents():
    """Agents a test makes; closed after it."""
    made = []
    yield made
    for a in made:
        a.close(flush=0)


class CutProxy:
    """A TCP proxy to the coordinator; cut() drops every connection through it, as a network failure would."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        # While set, a new connection is accepted and then hears nothing (its bytes are lost).
        self.swallowing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.swallowing:
                with self.lock:
                    self.conns.append(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def blackhole(self) -> None:
        """New connections are accepted and then hear nothing, until heal()."""
        self.swallowing = True

    def heal(self) -> None:
        self.swallowing = False

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.closed = True
        self.server.close()
        self.cut()


@pytest.fixture
def proxy_factory():
    made = []

    def make(port: int) -> CutProxy:
        p = CutProxy(port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()

"""A managed agent's side of the baton session (docs/agents.md), the shape of the TypeScript
SDK (src/agent/agent.ts): Hello, then directives acknowledged on receipt and run by a handler
(or taken from an iterator), progress that extends the lease, completions kept until the
coordinator acknowledges them, status answers and the synced status push, heartbeats both
ways, signed batches and sealed input, and reconnect with backoff that resumes the session.
"""

import logging
import math
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from ._gen.baton.v1 import common_pb2, coordination_pb2, security_pb2, session_pb2, session_pb2_grpc
from .crypto import DEFAULT_REPLAY_WINDOW_S, SEALED_DIRECTIVE_TYPE, Keyring, ReplayGuard, open_sealed, sign, verify
from .errors import BatonAgentError, failed_precondition, invalid_argument, permission_denied, unauthenticated
from .reconnect import SessionEnd, backoff_s, final_refusal

PROTOCOL_VERSION = "1.0.0"
USER_AGENT = "baton-python-sdk/0.1.0"
_ACCEPTED = coordination_pb2.ACK_OUTCOME_ACCEPTED
_REJECTED = coordination_pb2.ACK_OUTCOME_REJECTED
_NOT_NOW = coordination_pb2.ACK_OUTCOME_NOT_NOW

Pem = Union[bytes, str]


def _pem(value: Pem) -> bytes:
    """PEM bytes, or the bytes of the file a str names."""
    if isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def _seconds(duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _timestamp(t: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(int(round(t * 1000)))
    return ts


def task_id_of(directive) -> str:
    kind = directive.parameters.WhichOneof("kind")
    if kind == "assign_task":
        return directive.parameters.assign_task.task_id
    if kind == "form_coalition":
        return directive.parameters.form_coalition.task_id
    return ""


# The trailer a follower names the leader in.
LEADER_TRAILER = "baton-leader"

class Directive:
    """A directive received, with the ways to answer it (accept, reject, defer), to report
    on it (progress) and to finish it (complete, fail). `cancelled` is set when the
    coordinator cancels it or the agent stops."""

    def __init__(self, agent: "Agent", message, sensitive_input: Optional[dict]):
        self._agent = agent
        self.message = message
        self.sensitive_input = sensitive_input
        self.cancelled = threading.Event()
        self.cancel_reason = ""
        self._answer = None
        self._done = False
        self._started = time.monotonic()

    @property
    def id(self) -> str:
        return self.message.directive_id

    @property
    def task_id(self) -> str:
        return task_id_of(self.message)

    @property
    def action(self) -> str:
        """"assign_task", "form_coalition" or "adjust_resources"."""
        return self.message.parameters.WhichOneof("kind") or ""

    @property
    def input(self) -> dict:
        """The task's input (assign_task, form_coalition), as a dict."""
        p = self.message.parameters
        kind = p.WhichOneof("kind")
        if kind in ("assign_task", "form_coalition") and getattr(p, kind).HasField("input"):
            return json_format.MessageToDict(getattr(p, kind).input)
        return {}

    def accept(self) -> None:
        """Takes it (DirectiveAck ACCEPTED)."""
        self._agent._answer(self, _ACCEPTED, "")

    def reject(self, reason: str) -> None:
        """Refuses it for good; it is not retried to this agent."""
        self._agent._answer(self, _REJECTED, reason or "rejected")

    def defer(self, reason: str, retry_after: Optional[float] = None) -> None:
        """Not now (a NAK): the coordinator redelivers later, after retry_after seconds if given."""
        self._agent._answer(self, _NOT_NOW, reason, retry_after)

    def progress(self, completion_percentage: float, resource_utilization: float = 0.0, custom: Optional[Dict[str, float]] = None) -> None:
        """Reports progress (0..100), which also extends the directive's lease."""
        self._agent._progress(self, completion_percentage, resource_utilization, custom or {})

    def complete(self, result: Optional[dict] = None) -> None:
        """Reports success (CANCELLED if it was cancelled); kept and resent until the coordinator acknowledges it."""
        status = coordination_pb2.COMPLETION_STATUS_CANCELLED if self.cancelled.is_set() else coordination_pb2.COMPLETION_STATUS_SUCCEEDED
        self._agent._finish(self, status, result, None)

    def fail(self, message: str, code: str = "directive_failed", retryable: bool = True) -> None:
        """Reports failure; retryable=False dead-letters the task at once."""
        status = coordination_pb2.COMPLETION_STATUS_CANCELLED if self.cancelled.is_set() else coordination_pb2.COMPLETION_STATUS_FAILED
        self._agent._finish(self, status, None, coordination_pb2.TaskError(code=code, message=message, retryable=retryable))

    def _cancel(self, reason: str) -> None:
        if not self.cancelled.is_set():
            self.cancel_reason = reason
            self.cancelled.set()


Handler = Callable[[Directive], Optional[dict]]


class Agent:
    """One managed agent. `connect()` opens the session; `run(handler)` serves directives."""

    def __init__(
        self,
        address: str,
        agent_id: str,
        *,
        ca: Pem,
        cert: Pem,
        key: Pem,
        capabilities: Sequence[str] = (),
        resources: Sequence[common_pb2.Resource] = (),
        labels: Optional[Dict[str, str]] = None,
        max_in_flight: int = 0,
        metrics: Optional[Callable[[], Dict[str, float]]] = None,
        utilization: Optional[Callable[[], float]] = None,
        reconnect: bool = True,
        wait_for_coordinator: bool = False,
        reconnect_initial: float = 0.1,
        reconnect_max: float = 5.0,
        welcome_timeout: float = 10.0,
        dedup_memory: int = 100_000,
        require_message_security: bool = False,
        replay_window: Optional[float] = None,
        clock: Callable[[], float] = time.time,
        logger: Optional[logging.Logger] = None,
    ):
        self.address = address
        self.agent_id = agent_id
        self._creds = grpc.ssl_channel_credentials(root_certificates=_pem(ca), private_key=_pem(key), certificate_chain=_pem(cert))
        self._capabilities = list(capabilities)
        self._resources = list(resources)
        self._labels = dict(labels or {})
        self._max_in_flight = max_in_flight
        self._metrics = metrics
        self._utilization = utilization
        self._reconnect = reconnect
        self._wait = wait_for_coordinator
        self._initial = reconnect_initial
        self._max = reconnect_max
        if not isinstance(welcome_timeout, (int, float)) or not math.isfinite(welcome_timeout) or welcome_timeout <= 0:
            raise ValueError(f"welcome_timeout must be a positive number of seconds, got {welcome_timeout!r}")
        self._welcome_timeout = float(welcome_timeout)
        self._dedup = dedup_memory
        self._require_security = require_message_security
        self._replay_window = replay_window
        self._clock = clock
        self.log = logger or logging.getLogger("baton_agent").getChild(agent_id)
        self._lock = threading.RLock()
        self._seen: Dict[str, Directive] = {}
        self._unacked: Dict[str, coordination_pb2.TaskCompletion] = {}
        self._inbox: "queue.Queue[Optional[Directive]]" = queue.Queue()
        self._outbox: Optional[queue.Queue] = None
        self._call = None
        self._channel: Optional[grpc.Channel] = None
        self._welcome: Optional[session_pb2.Welcome] = None
        self._session_id = ""
        self._last_sequence = 0
        self._keyring: Optional[Keyring] = None
        self._replay: Optional[ReplayGuard] = None
        self._draining: Optional[session_pb2.Drain] = None
        self._status_pushed_at = float("-inf")
        self._status_timer: Optional[threading.Timer] = None
        self._last_heard = time.monotonic()
        self._stopping = threading.Event()
        self._ended: Optional[SessionEnd] = None
        self._done = threading.Event()
        self._first: Optional[dict] = None
        self._thread: Optional[threading.Thread] = None
        self._listeners: Dict[str, List[Callable]] = {}

    # ---- public face ----

    def on(self, event: str, fn: Callable) -> None:
        """Calls fn on "welcome" (Welcome), "drain" (Drain), "disconnected" and "closed" (SessionEnd), "reconnecting" (SessionEnd, attempt, delay)."""
        self._listeners.setdefault(event, []).append(fn)

    @property
    def session(self) -> Optional[session_pb2.Welcome]:
        """The Welcome of the current session."""
        return self._welcome

    @property
    def unacknowledged_completions(self) -> int:
        """Completions the coordinator has not acknowledged yet."""
        with self._lock:
            return len(self._unacked)

    @property
    def ended(self) -> Optional[SessionEnd]:
        """How the agent stopped, once it has."""
        return self._ended

    def connect(self, timeout: Optional[float] = None) -> session_pb2.Welcome:
        """Opens the session and returns the first Welcome; a refusal raises BatonAgentError,
        and so does any first failure unless wait_for_coordinator. Later failures reconnect."""
        first = {"event": threading.Event(), "welcome": None, "error": None}
        self._first = first
        self._thread = threading.Thread(target=self._loop, name=f"baton-agent-{self.agent_id}", daemon=True)
        self._thread.start()
        if not first["event"].wait(timeout):
            raise BatonAgentError(grpc.StatusCode.DEADLINE_EXCEEDED, f"no Welcome within {timeout} s")
        if first["error"] is not None:
            raise first["error"]
        return first["welcome"]

    def directives(self) -> Iterator[Directive]:
        """Directives as they arrive, duplicates dropped; answer each (accept/reject/defer), then complete or fail it. Ends when the agent stops."""
        while True:
            item = self._inbox.get()
            if item is None:
                self._inbox.put(None)
                return
            yield item

    def run(self, handler: Handler, workers: Optional[int] = None) -> SessionEnd:
        """Handler mode: each directive is accepted on receipt, run on a worker thread, completed
        with the handler's return value, failed with its exception. Returns when the agent stops."""
        size = workers or (self._welcome.max_in_flight if self._welcome and self._welcome.max_in_flight else 16)
        with ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"baton-{self.agent_id}") as pool:
            for d in self.directives():
                d.accept()
                pool.submit(self._run_one, handler, d)
        self._done.wait()
        return self._ended

    def wait(self, timeout: Optional[float] = None) -> Optional[SessionEnd]:
        """Waits until the agent has stopped for good; its final status."""
        self._done.wait(timeout)
        return self._ended

    def close(self, flush: float = 1.0) -> SessionEnd:
        """Stops: waits up to `flush` seconds for unacknowledged completions, then half-closes the stream so the coordinator sees a clean end."""
        if self._ended:
            return self._ended
        deadline = time.monotonic() + flush
        while self.unacknowledged_completions and self._welcome is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping.set()
        outbox = self._outbox
        if outbox is not None:
            outbox.put(None)
        if not self._done.wait(2.0):
            call = self._call
            if call is not None:
                call.cancel()
            if self._thread is None:
                self._stop(SessionEnd(grpc.StatusCode.OK, "closed by the agent"))
            self._done.wait(5.0)
        return self._ended

    # ---- the session loop ----

    def _emit(self, event: str, *args) -> None:
        for fn in self._listeners.get(event, []):
            try:
                fn(*args)
            except Exception:  # a listener's bug must not end the session
                self.log.exception("%s listener failed", event)

    def _loop(self) -> None:
        failures = 0
        followed = False
        while not self._stopping.is_set():
            end = self._run_session()
            if self._stopping.is_set():
                break
            welcomed = self._welcome is not None
            self._welcome = None
            self._emit("disconnected", end)
            if welcomed:
                followed = False
            if end.code == grpc.StatusCode.UNAVAILABLE and end.leader and end.leader != self.address and not followed:
                # A follower refused before any session: the leader it names, at once. Once
                # per backoff: two followers naming each other must not make a tight loop.
                self.log.info("%s is a follower; the leader is %s", self.address, end.leader)
                self.address = end.leader
                followed = True
                continue
            followed = False
            refusal = final_refusal(end)
            give_up = refusal or (end if (not self._reconnect or (self._first is not None and not self._wait)) else None)
            if give_up:
                self._fail_first(BatonAgentError(give_up.code, give_up.message))
                return self._stop(give_up)
            failures = 1 if welcomed else failures + 1
            wait = backoff_s(failures, self._initial, self._max)
            self.log.info("session lost (%s: %s); reconnecting in %.3f s", end.code.name, end.message, wait)
            self._emit("reconnecting", end, failures, wait)
            self._stopping.wait(wait)
        self._stop(SessionEnd(grpc.StatusCode.OK, "closed by the agent"))

    def _dial(self) -> grpc.Channel:
        if self._channel is not None:
            self._channel.close()
        self._channel = grpc.secure_channel(self.address, self._creds)
        return self._channel

    def _run_session(self) -> SessionEnd:
        outbox: queue.Queue = queue.Queue()
        self._outbox = outbox
        self._keyring = None
        self._replay = None
        gate = threading.Event()
        self._gate = gate
        stop_beats = threading.Event()
        self._stop_beats = stop_beats
        with self._lock:
            hello = session_pb2.Hello(
                agent_id=self.agent_id,
                capabilities=self._capabilities,
                resources=self._resources,
                labels=self._labels,
                max_in_flight=self._max_in_flight,
                protocol_version=PROTOCOL_VERSION,
                user_agent=USER_AGENT,
                session_id=self._session_id,
                last_sequence=self._last_sequence,
                sent_at=_timestamp(self._clock()),
            )
        stub = session_pb2_grpc.CoordinatorStub(self._dial())
        call = stub.Connect(self._requests(session_pb2.ConnectRequest(hello=hello), gate, outbox))
        self._call = call
        # Heartbeats watch a session only from its Welcome: an attempt whose handshake lost its
        # bytes (a connection accepted, nothing answered) would wait on it for good. Given up
        # after welcome_timeout, it is dialled again like any lost attempt.
        unwelcomed = threading.Event()

        def no_welcome() -> None:
            if self._welcome is None and self._call is call:
                unwelcomed.set()
                call.cancel()

        welcome_timer = threading.Timer(self._welcome_timeout, no_welcome)
        welcome_timer.daemon = True
        welcome_timer.start()
        try:
            for frame in call:
                self._last_heard = time.monotonic()
                self._handle(frame)
            return SessionEnd(grpc.StatusCode.UNAVAILABLE, "the coordinator closed the session")
        except grpc.RpcError as err:
            if unwelcomed.is_set():
                return SessionEnd(grpc.StatusCode.UNAVAILABLE, f"no Welcome from the coordinator within {self._welcome_timeout:g} s")
            trailers = dict(err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else {}
            return SessionEnd(err.code(), err.details() or "", str(trailers.get(LEADER_TRAILER, "")))
        except BatonAgentError as err:
            self.log.warning("ending the session: %s", err)
            call.cancel()
            return SessionEnd(err.code, err.message)
        finally:
            welcome_timer.cancel()
            stop_beats.set()
            gate.set()
            outbox.put(None)
            if self._outbox is outbox:
                self._outbox = None
            self._call = None

    def _requests(self, hello, gate: threading.Event, outbox: queue.Queue):
        yield hello
        # Reports wait for Welcome: it says whether (and with which key) they must be signed.
        gate.wait()
        while True:
            items = [outbox.get()]
            # Everything queued while the stream was busy goes in one batch.
            while True:
                try:
                    items.append(outbox.get_nowait())
                except queue.Empty:
                    break
            reports = []
            for item in items:
                if item is None:
                    if reports:
                        yield self._batch(reports)
                    return
                if item[0] == "frame":
                    if reports:
                        yield self._batch(reports)
                        reports = []
                    yield item[1]
                else:
                    reports.append(item[1])
            if reports:
                yield self._batch(reports)

    def _batch(self, reports) -> session_pb2.ConnectRequest:
        batch = session_pb2.AgentReports(message_id=str(uuid.uuid4()), sent_at=_timestamp(self._clock()), sender=self.agent_id, reports=reports)
        keyring = self._keyring
        if keyring is None:
            return session_pb2.ConnectRequest(reports=batch)
        key = keyring.current()
        payload = batch.SerializeToString()
        return session_pb2.ConnectRequest(signed_reports=security_pb2.SignedEnvelope(key_id=key.key_id, payload=payload, signature=sign(key.secret, payload)))

    def _handle(self, frame) -> None:
        kind = frame.WhichOneof("kind")
        if kind == "welcome":
            self._on_welcome(frame.welcome)
        elif kind == "heartbeat":
            pass
        elif kind == "drain":
            self._on_drain(frame.drain)
        elif kind == "messages":
            if self._keyring is not None:
                raise unauthenticated("the coordinator sent unsigned messages on a signed session")
            self._dispatch(frame.messages.messages)
        elif kind == "signed_messages":
            self._dispatch(self._open_batch(frame.signed_messages).messages)

    def _open_batch(self, envelope) -> session_pb2.CoordinatorMessages:
        """Verifies a signed batch: the signature over the bytes as sent, then sender, id and timestamp."""
        if self._keyring is None or self._welcome is None:
            raise failed_precondition("signed messages arrived but Welcome carried no keys")
        verify(self._keyring.require(envelope.key_id).secret, envelope.payload, envelope.signature)
        batch = session_pb2.CoordinatorMessages.FromString(envelope.payload)
        if batch.sender != self._welcome.coordinator_id:
            raise permission_denied(f"a signed batch from {batch.sender!r} arrived on a session with {self._welcome.coordinator_id!r}")
        if not batch.message_id or not batch.HasField("sent_at"):
            raise invalid_argument("a signed batch needs a message_id and sent_at")
        self._replay.check(batch.message_id, batch.sent_at.seconds + batch.sent_at.nanos / 1e9)
        return batch

    def _dispatch(self, messages) -> None:
        for m in messages:
            kind = m.WhichOneof("kind")
            if kind == "status_request":
                self._answer_status(m.status_request.request_id)
            elif kind == "directive":
                self._receive(m.directive)
            elif kind == "cancel":
                with self._lock:
                    d = self._seen.get(m.cancel.directive_id)
                if d is not None:
                    d._cancel(m.cancel.reason or "directive cancelled")
            elif kind == "completion_ack":
                with self._lock:
                    self._unacked.pop(m.completion_ack.directive_id, None)
                self._maybe_leave()
            elif kind == "key_rotation":
                if self._keyring is None:
                    raise failed_precondition("a key rotation arrived on an unsigned session")
                self._keyring.apply(m.key_rotation)
                self.log.info("message keys rotated: %r", self._keyring)

    def _on_welcome(self, welcome) -> None:
        if welcome.HasField("server_time"):
            skew = self._clock() - (welcome.server_time.seconds + welcome.server_time.nanos / 1e9)
            windows = [w for w in (_seconds(welcome.replay_window) if welcome.HasField("replay_window") else 0, (self._replay_window or DEFAULT_REPLAY_WINDOW_S) if welcome.HasField("keys") else 0) if w > 0]
            if windows and (abs(skew) > min(windows) or not welcome.HasField("keys")):
                raise unauthenticated(f"clock skew: this agent's clock is off by {abs(skew) * 1000:.0f} ms from the coordinator's, beyond the {min(windows) * 1000:.0f} ms replay window; correct this host's clock (NTP)")
        if welcome.HasField("keys"):
            self._keyring = Keyring(welcome.keys, now=self._clock)
            window = min(w for w in (_seconds(welcome.replay_window) if welcome.HasField("replay_window") else 0, self._replay_window or DEFAULT_REPLAY_WINDOW_S) if w > 0)
            self._replay = ReplayGuard(window, now=self._clock)
        elif self._require_security:
            raise failed_precondition("the coordinator does not sign its messages, and this agent requires message security")
        with self._lock:
            if not welcome.resumed:
                if self._session_id:
                    # The coordinator did not keep our old session: it has replanned what we were running.
                    for d in self._seen.values():
                        if not d._done:
                            d._cancel("the session was lost; the coordinator replanned this directive")
                # Sequences restart with a new session.
                self._last_sequence = 0
            self._session_id = welcome.session_id
            self._welcome = welcome
            self._draining = None
            # Completions are reliable: every one not yet acknowledged goes again.
            for completion in self._unacked.values():
                self._report("task_completion", completion)
        interval = _seconds(welcome.heartbeat_interval) if welcome.HasField("heartbeat_interval") else 5.0
        threading.Thread(target=self._heartbeats, args=(interval, welcome.heartbeat_misses or 3, self._stop_beats, self._outbox, self._call), daemon=True).start()
        # A new session is a change: the coordinator's view of this agent starts from this push.
        self._status_changed()
        self._emit("welcome", welcome)
        self._gate.set()
        first, self._first = self._first, None
        if first is not None:
            first["welcome"] = welcome
            first["event"].set()

    def _on_drain(self, drain) -> None:
        if drain.withdrawn:
            # Control.UndrainAgent: in service again, taking new work.
            self.log.info("the coordinator withdraws its drain: this agent is in service again")
            self._draining = None
            self._emit("undrain", drain)
            return
        self.log.info("the coordinator asks this agent to drain: %s", drain.reason)
        self._draining = drain
        self._emit("drain", drain)
        self._maybe_leave()

    def _maybe_leave(self) -> None:
        """Draining toward another coordinator: once nothing runs and every completion is acknowledged, move there."""
        drain = self._draining
        if drain is None or not drain.reconnect_to:
            return
        with self._lock:
            busy = any(not d._done for d in self._seen.values()) or self._unacked
        if not busy and self._outbox is not None:
            self.address = drain.reconnect_to
            # A new place: a new session there (the old one is this coordinator's).
            self._session_id = ""
            self._outbox.put(None)

    def _heartbeats(self, interval: float, misses: int, stop: threading.Event, outbox, call) -> None:
        while not stop.wait(interval):
            if time.monotonic() - self._last_heard > interval * misses:
                self.log.warning("no heartbeat from the coordinator for %d intervals; reconnecting", misses)
                if call is not None:
                    call.cancel()
                return
            with self._lock:
                seq = self._last_sequence
            outbox.put(("frame", session_pb2.ConnectRequest(heartbeat=session_pb2.Heartbeat(sent_at=_timestamp(self._clock()), last_sequence=seq))))

    # ---- directives ----

    def _report(self, kind: str, value) -> None:
        # With no stream the report is dropped: acks are answered again on replay, completions are kept in _unacked.
        outbox = self._outbox
        if outbox is not None:
            outbox.put(("report", session_pb2.AgentReport(**{kind: value})))

    def _receive(self, message) -> None:
        with self._lock:
            if message.sequence > self._last_sequence:
                self._last_sequence = message.sequence
            known = self._seen.get(message.directive_id)
            if known is not None:
                # A redelivery or replay: the directive takes effect once; answer for the new attempt.
                known.message.attempt = message.attempt
                known.message.sequence = message.sequence
                if known._answer is not None:
                    self._send_ack(known)
                return
        sensitive, error = None, None
        if message.parameters.HasField("sealed"):
            s = message.parameters.sealed
            try:
                if self._keyring is None or self._welcome is None:
                    raise unauthenticated("no session keys to open it with")
                plaintext = open_sealed(self._keyring.require(s.key_id).secret, s.key_id, s.nonce, s.ciphertext, s.tag, message.directive_id, self._welcome.coordinator_id, SEALED_DIRECTIVE_TYPE)
                sensitive = json_format.MessageToDict(struct_pb2.Struct.FromString(plaintext))
            except BatonAgentError as err:
                error = f"its sealed parameters do not open: {err.message}"
        d = Directive(self, message, sensitive)
        with self._lock:
            self._remember(d)
        if error:
            self.log.warning("directive %s refused: %s", message.directive_id, error)
            d.reject(error)
        elif self._draining is not None:
            d.defer("draining")
        else:
            self._inbox.put(d)

    def _remember(self, d: Directive) -> None:
        self._seen[d.id] = d
        if len(self._seen) > self._dedup:
            # Forget the oldest finished directives first; running ones are never forgotten.
            for key in [k for k, v in self._seen.items() if v._done][: len(self._seen) - self._dedup]:
                del self._seen[key]

    def _answer(self, d: Directive, outcome, reason: str, retry_after: Optional[float] = None) -> None:
        with self._lock:
            if d._answer is not None:
                return
            d._answer = (outcome, reason, retry_after)
            if outcome != _ACCEPTED:
                d._done = True
                # A deferred directive may come back as itself: let it through then.
                if outcome == _NOT_NOW:
                    self._seen.pop(d.id, None)
            self._send_ack(d)
        if outcome == _ACCEPTED:
            self._status_changed()

    def _send_ack(self, d: Directive) -> None:
        outcome, reason, retry_after = d._answer
        ack = coordination_pb2.DirectiveAck(
            directive_id=d.id, timestamp=_timestamp(self._clock()), source_agent=self.agent_id, attempt=d.message.attempt, sequence=d.message.sequence, outcome=outcome, reason=reason
        )
        if retry_after is not None:
            ack.retry_after.FromMilliseconds(int(round(retry_after * 1000)))
        self._report("directive_ack", ack)

    def _progress(self, d: Directive, pct: float, utilization: float, custom: Dict[str, float]) -> None:
        metrics = coordination_pb2.ProgressMetrics(completion_percentage=pct, resource_utilization=utilization, custom=custom)
        self._report(
            "progress_update",
            coordination_pb2.ProgressUpdate(
                event_id=str(uuid.uuid4()), timestamp=_timestamp(self._clock()), source_agent=self.agent_id, status=common_pb2.PROGRESS_STATUS_IN_PROGRESS, metrics=metrics, directive_id=d.id, task_id=d.task_id
            ),
        )

    def _finish(self, d: Directive, status, result: Optional[dict], error) -> None:
        with self._lock:
            if d._done:
                return
            d._done = True
            completion = coordination_pb2.TaskCompletion(event_id=str(uuid.uuid4()), timestamp=_timestamp(self._clock()), source_agent=self.agent_id, directive_id=d.id, task_id=d.task_id, status=status)
            if result is not None:
                completion.result.update(result)
            if error is not None:
                completion.error.CopyFrom(error)
            completion.duration.FromMilliseconds(int(round((time.monotonic() - d._started) * 1000)))
            self._unacked[d.id] = completion
            self._report("task_completion", completion)
        self._status_changed()

    def _run_one(self, handler: Handler, d: Directive) -> None:
        try:
            result = handler(d)
        except Exception as err:  # the handler's failure is the task's
            d.fail(str(err) or type(err).__name__)
        else:
            d.complete(result)
        self._maybe_leave()

    # ---- status ----

    def _status_changed(self) -> None:
        """Pushes this agent's status when its work changed, at most once per Welcome.sync_interval."""
        welcome = self._welcome
        if welcome is None or not welcome.HasField("sync_interval"):
            return
        with self._lock:
            if self._status_timer is not None:
                return
            wait = self._status_pushed_at + _seconds(welcome.sync_interval) - time.monotonic()

            def push():
                with self._lock:
                    self._status_timer = None
                    self._status_pushed_at = time.monotonic()
                self._answer_status(str(uuid.uuid4()))

            if wait <= 0:
                self._status_pushed_at = time.monotonic()
                self._answer_status(str(uuid.uuid4()))
            else:
                self._status_timer = threading.Timer(wait, push)
                self._status_timer.daemon = True
                self._status_timer.start()

    def _answer_status(self, request_id: str) -> None:
        with self._lock:
            active = [d for d in self._seen.values() if not d._done and d._answer is not None and d._answer[0] == _ACCEPTED]
        self._report(
            "status_response",
            coordination_pb2.AgentStatusResponse(
                request_id=request_id,
                timestamp=_timestamp(self._clock()),
                source_agent=self.agent_id,
                state=common_pb2.AGENT_STATE_DRAINING if self._draining is not None else common_pb2.AGENT_STATE_ONLINE,
                in_flight=len(active),
                active_directives=[d.id for d in active],
                resource_utilization=self._utilization() if self._utilization else 0.0,
                metrics=self._metrics() if self._metrics else {},
            ),
        )

    # ---- the end ----

    def _fail_first(self, error: BatonAgentError) -> None:
        first, self._first = self._first, None
        if first is not None:
            first["error"] = error
            first["event"].set()

    def _stop(self, end: SessionEnd) -> None:
        if self._ended is not None:
            return
        self._ended = end
        with self._lock:
            if self._status_timer is not None:
                self._status_timer.cancel()
            for d in self._seen.values():
                if not d._done:
                    d._cancel("the agent stopped")
        self._inbox.put(None)
        if self._channel is not None:
            self._channel.close()
        self._fail_first(BatonAgentError(grpc.StatusCode.CANCELLED if end.code == grpc.StatusCode.OK else end.code, "the agent closed before the coordinator welcomed it" if end.code == grpc.StatusCode.OK else end.message))
        self.log.info("agent stopped: %s %s", end.code.name, end.message)
        self._done.set()
        self._emit("closed", end)

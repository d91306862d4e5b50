#!/usr/bin/python3
"""A baton agent on the raw generated stubs, following docs/agents.md step by step, with no SDK:
Hello, Welcome, heartbeats, signed batches both ways, acks on receipt, sealed input opened,
completions resent until acknowledged, status answers, key rotation. It sums the numbers of
each task's input. (No reconnect: see docs/agents.md, "Reconnect and resume".)

    BATON_AGENT_ID=task_executor_1 BATON_CA=certs/ca.pem BATON_CERT=certs/task_executor_1.pem \
      BATON_KEY=certs/task_executor_1.key /usr/bin/python3 examples/python/raw_agent.py

The stubs are the ones committed in sdk/python/baton_agent/_gen (docs/agents.md, "Generating
stubs", makes the same from proto/); only they are used here, not the SDK.
"""

import hashlib
import hmac
import os
import queue
import sys
import threading
import time
import uuid

import grpc
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format, struct_pb2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
from baton_agent._gen.baton.v1 import common_pb2, coordination_pb2, security_pb2, session_pb2, session_pb2_grpc  # noqa: E402

env = os.environ
AGENT_ID = env["BATON_AGENT_ID"]
read = lambda path: open(path, "rb").read()  # noqa: E731
creds = grpc.ssl_channel_credentials(read(env["BATON_CA"]), read(env["BATON_KEY"]), read(env["BATON_CERT"]))
stub = session_pb2_grpc.CoordinatorStub(grpc.secure_channel(env.get("BATON_ADDRESS", "localhost:50051"), creds))

outgoing = queue.Queue()  # ConnectRequest frames, or report lists to batch
keys = {}  # key_id -> 32-byte secret (Welcome.keys, then KeyRotation)
signing_key = [""]  # the first key of the latest KeyRotation signs
welcome = [None]
last_sequence = [0]
answered = {}  # directive_id -> DirectiveAck: a redelivery is answered again, never run again
unacked = {}  # directive_id -> TaskCompletion, until its CompletionAck
seen_batches = set()  # message ids of coordinator batches: a replay is refused


def now():
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def requests():
    """Hello first; then heartbeats and report batches (signed when Welcome carried keys)."""
    yield session_pb2.ConnectRequest(hello=session_pb2.Hello(agent_id=AGENT_ID, capabilities=["python"], protocol_version="1.0.0", user_agent="raw-python-example", sent_at=now()))
    while True:
        item = outgoing.get()
        if isinstance(item, session_pb2.ConnectRequest):
            yield item
            continue
        batch = session_pb2.AgentReports(message_id=str(uuid.uuid4()), sent_at=now(), sender=AGENT_ID, reports=item)
        if not keys:
            yield session_pb2.ConnectRequest(reports=batch)
            continue
        payload = batch.SerializeToString()
        signature = hmac.new(keys[signing_key[0]], payload, hashlib.sha256).digest()
        yield session_pb2.ConnectRequest(signed_reports=security_pb2.SignedEnvelope(key_id=signing_key[0], payload=payload, signature=signature))


def report(**kind):
    outgoing.put([session_pb2.AgentReport(**kind)])


def apply_keys(rotation):
    keys.clear()
    keys.update({k.key_id: k.secret for k in rotation.keys})
    signing_key[0] = rotation.keys[0].key_id


def heartbeats(interval):
    while True:
        time.sleep(interval)
        outgoing.put(session_pb2.ConnectRequest(heartbeat=session_pb2.Heartbeat(sent_at=now(), last_sequence=last_sequence[0])))


def aad(key_id, directive_id, coordinator_id):
    out = b""
    for value in ("baton.v1.SealedPayload", key_id, directive_id, coordinator_id, "baton.v1.CoordinationDirective"):
        data = value.encode()
        out += len(data).to_bytes(4, "big") + data
    return out


def on_directive(d):
    last_sequence[0] = max(last_sequence[0], d.sequence)
    if d.directive_id in answered:
        # Redelivered (lost ack, resume): ack again with the new attempt; never run it twice.
        ack = answered[d.directive_id]
        ack.attempt, ack.sequence = d.attempt, d.sequence
        ack.timestamp.CopyFrom(now())
        report(directive_ack=ack)
        return
    ack = coordination_pb2.DirectiveAck(directive_id=d.directive_id, timestamp=now(), source_agent=AGENT_ID, attempt=d.attempt, sequence=d.sequence, outcome=coordination_pb2.ACK_OUTCOME_ACCEPTED)
    answered[d.directive_id] = ack
    report(directive_ack=ack)
    kind = d.parameters.WhichOneof("kind")
    params = getattr(d.parameters, kind)
    task_id = getattr(params, "task_id", "")
    completion = coordination_pb2.TaskCompletion(event_id=str(uuid.uuid4()), timestamp=now(), source_agent=AGENT_ID, directive_id=d.directive_id, task_id=task_id, status=coordination_pb2.COMPLETION_STATUS_SUCCEEDED)
    if kind == "adjust_resources":
        pass  # a grant or revoke of resources: nothing to run, just complete it
    else:
        secret = None
        if d.parameters.HasField("sealed"):
            s = d.parameters.sealed
            plaintext = AESGCM(keys[s.key_id]).decrypt(s.nonce, s.ciphertext + s.tag, aad(s.key_id, d.directive_id, welcome[0].coordinator_id))
            secret = json_format.MessageToDict(struct_pb2.Struct.FromString(plaintext))
        numbers = json_format.MessageToDict(params.input).get("numbers", [])
        completion.result.update({"sum": sum(numbers), "by": AGENT_ID, "secret_seen": secret is not None})
    unacked[d.directive_id] = completion
    report(task_completion=completion)


def on_messages(batch):
    for m in batch.messages:
        kind = m.WhichOneof("kind")
        if kind == "directive":
            on_directive(m.directive)
        elif kind == "status_request":
            # This agent's work is instant, so nothing is ever in flight when it answers.
            report(status_response=coordination_pb2.AgentStatusResponse(request_id=m.status_request.request_id, timestamp=now(), source_agent=AGENT_ID, state=common_pb2.AGENT_STATE_ONLINE, in_flight=0))
        elif kind == "completion_ack":
            unacked.pop(m.completion_ack.directive_id, None)
        elif kind == "key_rotation":
            apply_keys(m.key_rotation)
        elif kind == "cancel":
            pass  # this agent's work is instant; a longer one would stop it (no completion needed)


for frame in stub.Connect(requests()):
    kind = frame.WhichOneof("kind")
    if kind == "welcome":
        welcome[0] = frame.welcome
        if frame.welcome.HasField("keys"):
            apply_keys(frame.welcome.keys)
        interval = frame.welcome.heartbeat_interval.seconds + frame.welcome.heartbeat_interval.nanos / 1e9
        threading.Thread(target=heartbeats, args=(interval,), daemon=True).start()
        print("welcome", frame.welcome.session_id, flush=True)
    elif kind == "signed_messages":
        envelope = frame.signed_messages
        if envelope.key_id not in keys:
            sys.exit(f"a coordinator batch under unknown key {envelope.key_id!r}")
        expected = hmac.new(keys[envelope.key_id], envelope.payload, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, envelope.signature):
            sys.exit("a coordinator batch does not verify")
        batch = session_pb2.CoordinatorMessages.FromString(envelope.payload)
        window = welcome[0].replay_window.seconds or 300
        sent_at = batch.sent_at.seconds + batch.sent_at.nanos / 1e9
        if batch.sender != welcome[0].coordinator_id or abs(time.time() - sent_at) > window or batch.message_id in seen_batches:
            sys.exit("a coordinator batch from another sender, stale, or replayed")
        seen_batches.add(batch.message_id)
        on_messages(batch)
    elif kind == "messages":
        on_messages(frame.messages)
    elif kind == "drain":
        print("drain:", frame.drain.reason, flush=True)

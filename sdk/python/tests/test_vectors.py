"""The shared vectors (testdata/message-security.json), made by baton's TypeScript code: this
SDK must sign, verify, seal and open byte for byte alike, and refuse every tampered case."""

import json
import os

import grpc
import pytest
from conftest import ROOT
from google.protobuf import json_format, struct_pb2

from baton_agent import BatonAgentError, Keyring, additional_data, open_sealed, seal, sign, verify
from baton_agent._gen.baton.v1 import security_pb2, session_pb2

with open(os.path.join(ROOT, "testdata", "message-security.json")) as f:
    VECTORS = json.load(f)
KEYS = {k["key_id"]: bytes.fromhex(k["secret_hex"]) for k in VECTORS["keys"]}


def keyring() -> Keyring:
    return Keyring.from_keys(KEYS, retired=VECTORS["retired_key_ids"])


def verify_envelope(envelope) -> bytes:
    verify(keyring().require(envelope.key_id).secret, envelope.payload, envelope.signature)
    return envelope.payload


def code_of(fn) -> str:
    try:
        fn()
    except BatonAgentError as err:
        return err.code.name
    return "OK"


@pytest.mark.parametrize("v", VECTORS["signed"], ids=lambda v: v["name"])
def test_signed(v):
    envelope = security_pb2.SignedEnvelope.FromString(bytes.fromhex(v["envelope_hex"]))
    assert envelope.key_id == v["key_id"] and envelope.payload.hex() == v["payload_hex"]
    if v["valid"]:
        assert verify_envelope(envelope).hex() == v["payload_hex"]
        assert sign(KEYS[v["key_id"]], bytes.fromhex(v["payload_hex"])).hex() == v["signature_hex"]
        if "payload_json" in v:
            batch = session_pb2.AgentReports.FromString(bytes.fromhex(v["payload_hex"]))
            assert json_format.MessageToDict(batch) == v["payload_json"]
    else:
        assert code_of(lambda: verify_envelope(envelope)) == v["error_code"]


@pytest.mark.parametrize("v", VECTORS["sealed"], ids=lambda v: v["name"])
def test_sealed(v):
    c = v["context"]
    assert additional_data(v["key_id"], c["message_id"], c["sender"], c["message_type"]).hex() == v["aad_hex"]
    args = (bytes.fromhex(v["nonce_hex"]), bytes.fromhex(v["ciphertext_hex"]), bytes.fromhex(v["tag_hex"]), c["message_id"], c["sender"], c["message_type"])

    def opened():
        return open_sealed(keyring().require(v["key_id"]).secret, v["key_id"], *args)

    if v["valid"]:
        assert opened().hex() == v["plaintext_hex"]
        # Sealing the same plaintext with the same nonce makes the same bytes.
        ciphertext, tag = seal(KEYS[v["key_id"]], v["key_id"], bytes.fromhex(v["nonce_hex"]), bytes.fromhex(v["plaintext_hex"]), c["message_id"], c["sender"], c["message_type"])
        assert (ciphertext.hex(), tag.hex()) == (v["ciphertext_hex"], v["tag_hex"])
        if "plaintext_json" in v:
            assert json_format.MessageToDict(struct_pb2.Struct.FromString(bytes.fromhex(v["plaintext_hex"]))) == v["plaintext_json"]
    else:
        assert code_of(opened) == v["error_code"]


@pytest.mark.parametrize("v", VECTORS["frames"], ids=lambda v: v["name"])
def test_frame(v):
    frame = session_pb2.ConnectResponse.FromString(bytes.fromhex(v["frame_hex"]))
    assert frame.WhichOneof("kind") == "signed_messages"
    batch = session_pb2.CoordinatorMessages.FromString(verify_envelope(frame.signed_messages))
    assert json_format.MessageToDict(batch) == v["payload_json"]
    d = batch.messages[0].directive
    s = d.parameters.sealed
    plaintext = open_sealed(KEYS[s.key_id], s.key_id, s.nonce, s.ciphertext, s.tag, d.directive_id, batch.sender, "baton.v1.CoordinationDirective")
    assert json_format.MessageToDict(struct_pb2.Struct.FromString(plaintext)) == v["sealed_plaintext_json"]


def test_retired_and_unknown_keys_are_refused():
    ring = keyring()
    assert code_of(lambda: ring.require("k0")) == grpc.StatusCode.UNAUTHENTICATED.name
    assert code_of(lambda: ring.require("k9")) == grpc.StatusCode.UNAUTHENTICATED.name
    assert ring.current().key_id == "k1"

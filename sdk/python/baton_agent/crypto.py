"""Message security, byte for byte as baton's coordinator does it (docs/agents.md, "Signing"
and "Sealing"; testdata/message-security.json checks both implementations):

- signing: HMAC-SHA256(secret, payload) over the serialized batch exactly as sent;
- sealing: AES-256-GCM with the same 32-byte secret, a 12-byte nonce and a 16-byte tag, the
  additional data binding the key id, the directive id, the coordinator id and the type.
"""

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import invalid_argument, unauthenticated

SIGNATURE_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
AAD_LABEL = "baton.v1.SealedPayload"
SEALED_DIRECTIVE_TYPE = "baton.v1.CoordinationDirective"
DEFAULT_REPLAY_WINDOW_S = 300.0


def sign(secret: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256 of exactly these payload bytes."""
    return hmac.new(secret, payload, hashlib.sha256).digest()


def verify(secret: bytes, payload: bytes, signature: bytes) -> None:
    """Raises UNAUTHENTICATED unless signature is the HMAC-SHA256 of payload under secret."""
    if len(signature) != SIGNATURE_BYTES:
        raise unauthenticated(f"the signature is {len(signature)} bytes; HMAC-SHA256 signatures are {SIGNATURE_BYTES}")
    if not hmac.compare_digest(sign(secret, payload), signature):
        raise unauthenticated("the message signature does not verify")


def additional_data(key_id: str, message_id: str, sender: str, message_type: str) -> bytes:
    """The sealed payload's additional data: each of the label, key id, message id (the
    directive id), sender (the coordinator id) and message type as a 4-byte big-endian
    byte length then its UTF-8 bytes."""
    out = bytearray()
    for value in (AAD_LABEL, key_id, message_id, sender, message_type):
        data = value.encode("utf-8")
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def seal(secret: bytes, key_id: str, nonce: bytes, plaintext: bytes, message_id: str, sender: str, message_type: str = SEALED_DIRECTIVE_TYPE):
    """(ciphertext, tag) of plaintext under AES-256-GCM; the nonce must be fresh and random."""
    if len(nonce) != NONCE_BYTES:
        raise invalid_argument(f"the nonce is {len(nonce)} bytes; AES-GCM nonces here are {NONCE_BYTES}")
    sealed = AESGCM(secret).encrypt(nonce, plaintext, additional_data(key_id, message_id, sender, message_type))
    return sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]


def open_sealed(secret: bytes, key_id: str, nonce: bytes, ciphertext: bytes, tag: bytes, message_id: str, sender: str, message_type: str = SEALED_DIRECTIVE_TYPE) -> bytes:
    """The plaintext of a sealed payload; INVALID_ARGUMENT for a bad nonce, UNAUTHENTICATED for anything tampered with."""
    for name, value in (("message id", message_id), ("sender", sender), ("message type", message_type)):
        if not value:
            raise invalid_argument(f"the seal context needs a {name}")
    if len(nonce) != NONCE_BYTES:
        raise invalid_argument(f"the nonce is {len(nonce)} bytes; AES-GCM nonces here are {NONCE_BYTES}")
    if len(tag) != TAG_BYTES:
        raise unauthenticated(f"the tag is {len(tag)} bytes; {TAG_BYTES} are required")
    try:
        return AESGCM(secret).decrypt(nonce, ciphertext + tag, additional_data(key_id, message_id, sender, message_type))
    except InvalidTag:
        raise unauthenticated("the sealed payload does not authenticate (tampered, or sealed for another message)") from None


@dataclass
class SessionKey:
    key_id: str
    secret: bytes
    not_after: Optional[float]  # seconds since the epoch; None while it may still be current


class Keyring:
    """An agent's message keys, as the coordinator hands them out (Welcome.keys, then
    KeyRotation): every listed key is accepted until its not_after; the first listed
    signs new reports; a key dropped from the list, or named retired, is refused."""

    def __init__(self, rotation=None, now=time.time):
        self._now = now
        self._lock = threading.Lock()
        self._keys: List[SessionKey] = []
        self._retired: List[str] = []
        if rotation is not None:
            self.apply(rotation)

    @classmethod
    def from_keys(cls, keys: Dict[str, bytes], retired=(), now=time.time) -> "Keyring":
        ring = cls(now=now)
        ring._keys = [SessionKey(k, s, None) for k, s in keys.items()]
        ring._retired = list(retired)
        return ring

    def apply(self, rotation) -> None:
        """Replaces the keys by a KeyRotation's (INVALID_ARGUMENT if it is malformed)."""
        if len(rotation.keys) == 0:
            raise invalid_argument("a key rotation must carry at least one key")
        retiring = set(rotation.retired_key_ids)
        seen = set()
        fresh = []
        for i, k in enumerate(rotation.keys):
            if not k.key_id or len(k.key_id) > 128:
                raise invalid_argument(f"key {i} of the rotation has a key id of {len(k.key_id)} characters")
            if k.key_id in seen:
                raise invalid_argument(f"key id {k.key_id!r} appears twice in the rotation")
            if k.key_id in retiring:
                raise invalid_argument(f"key id {k.key_id!r} is both valid and retired in the rotation")
            if len(k.secret) != KEY_BYTES:
                raise invalid_argument(f"key {k.key_id!r} has a {len(k.secret)}-byte secret; {KEY_BYTES} bytes are required")
            seen.add(k.key_id)
            not_after = k.not_after.seconds + k.not_after.nanos / 1e9 if k.HasField("not_after") else None
            fresh.append(SessionKey(k.key_id, bytes(k.secret), not_after))
        with self._lock:
            # A key already retired here stays retired (the clocks may disagree on its not_after).
            fresh = [k for k in fresh if k.key_id not in self._retired]
            for old in self._keys:
                if old.key_id not in seen:
                    self._retire(old.key_id)
            for key_id in rotation.retired_key_ids:
                self._retire(key_id)
            self._keys = fresh
            self._expire()

    def _retire(self, key_id: str) -> None:
        if key_id not in self._retired:
            self._retired.append(key_id)
            del self._retired[:-64]

    def _expire(self) -> None:
        t = self._now()
        for k in self._keys:
            if k.not_after is not None and t > k.not_after:
                self._retire(k.key_id)
        self._keys = [k for k in self._keys if k.not_after is None or t <= k.not_after]

    def current(self) -> SessionKey:
        """The key that signs new reports: the first the coordinator listed that is still valid."""
        with self._lock:
            self._expire()
            if not self._keys:
                raise unauthenticated("no message key is valid; waiting for a key rotation")
            return self._keys[0]

    def require(self, key_id: str) -> SessionKey:
        """The accepted key with this id; UNAUTHENTICATED when it is unknown or retired."""
        with self._lock:
            self._expire()
            for k in self._keys:
                if k.key_id == key_id:
                    return k
            if key_id in self._retired:
                raise unauthenticated(f"message key {key_id!r} is retired")
            raise unauthenticated(f"message key {key_id!r} is unknown")

    def key_ids(self) -> List[str]:
        with self._lock:
            return [k.key_id for k in self._keys]

    def __repr__(self) -> str:
        # Secrets never reach a log.
        return f"Keyring(keys={self.key_ids()!r}, retired={self._retired!r})"


class ReplayGuard:
    """Refuses a signed batch whose sent_at is beyond the window from this clock, or whose message id was already seen within it."""

    def __init__(self, window_s: float = DEFAULT_REPLAY_WINDOW_S, now=time.time):
        self.window_s = window_s
        self._now = now
        self._seen: Dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, message_id: str, sent_at_s: float) -> None:
        if not message_id:
            raise invalid_argument("a signed batch needs a message_id")
        t = self._now()
        offset = sent_at_s - t
        if abs(offset) > self.window_s:
            kind = "stale" if offset < 0 else "in the future"
            raise unauthenticated(f"the message timestamp is {kind} ({abs(offset) * 1000:.0f} ms; the window is {self.window_s * 1000:.0f} ms)")
        with self._lock:
            if len(self._seen) > 1024:
                self._seen = {m: e for m, e in self._seen.items() if e > t}
            if message_id in self._seen:
                raise unauthenticated("the message id was already seen (a replay)")
            self._seen[message_id] = sent_at_s + self.window_s

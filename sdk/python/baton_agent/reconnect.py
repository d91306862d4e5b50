"""When to reconnect and how long to wait: the same rules as the TypeScript SDK (src/agent/reconnect.ts)."""

import random
import re
from typing import NamedTuple, Optional

import grpc


class SessionEnd(NamedTuple):
    """How a session (or an attempt at one) ended."""

    code: grpc.StatusCode
    message: str
    # A follower of a replica set names the leader (the baton-leader trailer): go there.
    leader: str = ""


# Statuses after which reconnecting cannot help: the coordinator refused this agent.
FINAL = {
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNIMPLEMENTED,
}

# grpc's C core reports a refused TLS handshake as UNAVAILABLE; its details name the certificate or the handshake.
TLS_REFUSAL = re.compile(r"certificate|handshake", re.I)


def final_refusal(end: SessionEnd) -> Optional[SessionEnd]:
    """The end as a final refusal (retrying cannot help), or None when the coordinator may be back later."""
    if end.code in FINAL:
        return end
    if end.code == grpc.StatusCode.UNAVAILABLE and TLS_REFUSAL.search(end.message or ""):
        return SessionEnd(grpc.StatusCode.UNAUTHENTICATED, f"the coordinator's certificate is not trusted, or ours was refused: {end.message}")
    return None


def backoff_s(failures: int, initial_s: float, max_s: float, rand=random.random) -> float:
    """Wait before attempt `failures` (1, 2, ...): exponential from initial_s, capped at max_s, half fixed and half random."""
    base = min(max_s, initial_s * 2 ** (failures - 1))
    return base / 2 + rand() * base / 2

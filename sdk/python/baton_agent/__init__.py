"""baton_agent: a managed agent for baton, the gRPC coordination server (docs/agents.md).

    from baton_agent import Agent

    agent = Agent("localhost:50051", "task_executor_1", ca="ca.pem", cert="agent.pem", key="agent.key", capabilities=["python"])
    agent.connect()
    agent.run(lambda d: {"sum": sum(d.input["numbers"])})
"""

from .agent import PROTOCOL_VERSION, Agent, Directive, Handler
from .crypto import Keyring, ReplayGuard, additional_data, open_sealed, seal, sign, verify
from .errors import BatonAgentError
from .reconnect import SessionEnd, backoff_s, final_refusal

__all__ = [
    "PROTOCOL_VERSION",
    "Agent",
    "BatonAgentError",
    "Directive",
    "Handler",
    "Keyring",
    "ReplayGuard",
    "SessionEnd",
    "additional_data",
    "backoff_s",
    "final_refusal",
    "open_sealed",
    "seal",
    "sign",
    "verify",
]

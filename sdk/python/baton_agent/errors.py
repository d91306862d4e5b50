"""The SDK's one error type: a gRPC status code and a message saying what was wrong."""

import grpc


class BatonAgentError(Exception):
    """An error with the gRPC status code it stands for (UNAUTHENTICATED for a bad signature, ...)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def unauthenticated(message: str) -> BatonAgentError:
    return BatonAgentError(grpc.StatusCode.UNAUTHENTICATED, message)


def invalid_argument(message: str) -> BatonAgentError:
    return BatonAgentError(grpc.StatusCode.INVALID_ARGUMENT, message)


def failed_precondition(message: str) -> BatonAgentError:
    return BatonAgentError(grpc.StatusCode.FAILED_PRECONDITION, message)


def permission_denied(message: str) -> BatonAgentError:
    return BatonAgentError(grpc.StatusCode.PERMISSION_DENIED, message)

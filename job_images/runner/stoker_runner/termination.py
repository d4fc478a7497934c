"""The termination message Kubernetes copies into the container status, and the operator into
status.attempts[].message."""

from __future__ import annotations

import traceback

# Kubernetes keeps at most this many bytes of a container's termination message.
MAX_BYTES = 4096
TRIMMED_MARKER = b" [trimmed]"
DEFAULT_PATH = "/dev/termination-log"


def describe(exception: BaseException) -> str:
    """The exception as "Type: message", module-qualified for non-builtins, like a traceback."""
    return "".join(traceback.format_exception_only(exception)).strip()


def trim(message: str, limit: int = MAX_BYTES) -> bytes:
    """The message as UTF-8 in at most `limit` bytes; the head is kept, it names the error."""
    encoded = message.encode("utf-8", errors="backslashreplace")
    if len(encoded) <= limit:
        return encoded
    head = encoded[: limit - len(TRIMMED_MARKER)]
    # Cutting bytes may split a character: drop its partial tail rather than write bad UTF-8.
    return head.decode("utf-8", errors="ignore").encode("utf-8") + TRIMMED_MARKER


def write(path: str, message: str) -> bool:
    """Write the trimmed message; False when the path is not writable (e.g. outside a pod)."""
    try:
        with open(path, "wb") as log:
            log.write(trim(message))
    except OSError:
        return False
    return True

"""The ``timeout=`` argument shared by every blocking call."""

from __future__ import annotations

import math
import threading

__all__ = ["DEFAULT_TIMEOUT"]


class _DefaultTimeout:
    """Marker for "the timeout given to the :class:`Cache`"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT_TIMEOUT"


#: Use the cache's own timeout (the default of every ``timeout=`` argument).
DEFAULT_TIMEOUT = _DefaultTimeout()


def _resolve_timeout(
    timeout: float | _DefaultTimeout | None, default: float | None
) -> float | None:
    if isinstance(timeout, _DefaultTimeout):
        return default
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be None or a number >= 0, not {timeout!r}")
    if timeout >= threading.TIMEOUT_MAX:
        # math.inf (and anything the platform cannot wait for) means forever;
        # passing it on made lock and condition waits raise OverflowError.
        return None
    return float(timeout)

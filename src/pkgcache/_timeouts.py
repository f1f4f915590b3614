"""The ``timeout=`` argument shared by every blocking call.

``None`` waits forever and a number of seconds waits that long, so "use the
cache's own timeout", the default, needs a value of its own:
:data:`DEFAULT_TIMEOUT`, the only member of :class:`DefaultTimeout`. A
one-member enum is the sentinel type checkers understand: after
``timeout is DEFAULT_TIMEOUT`` they know what is left is ``float | None``.
"""

from __future__ import annotations

import enum
import math
import threading
from typing import Final

__all__ = ["DEFAULT_TIMEOUT", "DefaultTimeout"]


class DefaultTimeout(enum.Enum):
    """The type of :data:`DEFAULT_TIMEOUT`; it has no other value."""

    DEFAULT = "default"

    def __repr__(self) -> str:
        return "pkgcache.DEFAULT_TIMEOUT"


#: The default of every ``timeout=`` argument: use the timeout given to the
#: :class:`Cache` (``Cache(root, timeout=...)``, ``None`` unless set).
DEFAULT_TIMEOUT: Final = DefaultTimeout.DEFAULT


def _resolve_timeout(
    timeout: float | DefaultTimeout | None, default: float | None
) -> float | None:
    if timeout is DEFAULT_TIMEOUT:
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

"""pkgcache: a package cache shared safely by threads and processes.

``Cache(root).reading(*packages)`` and ``Cache(root).exclusive(*packages)``
are reader/writer locks per package, correct across the threads of a process
and across processes, so workers on different packages never wait for each
other and nobody deletes what another worker is reading.
"""

from ._cache import DEFAULT_TIMEOUT, Cache, CacheTransaction, CacheView, LockRequest
from ._errors import (
    CacheError,
    CachePermissionError,
    EntryNotFound,
    InvalidArtifact,
    InvalidKey,
    InvalidLockServer,
    InvalidPackageName,
    InvalidRequirement,
    LockLost,
    LockOrderError,
    LockServerError,
    LockTimeout,
    LockUpgradeError,
    NotLockedError,
    SourceNotFound,
    StoreWriteError,
    UnsafePathError,
)
from ._holders import Holder
from ._names import canonical_name
from ._records import CacheInfo, CleanReport, Entry, PruneReport

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "Cache",
    "CacheError",
    "CacheInfo",
    "CachePermissionError",
    "CacheTransaction",
    "CacheView",
    "CleanReport",
    "Entry",
    "EntryNotFound",
    "Holder",
    "InvalidArtifact",
    "InvalidKey",
    "InvalidLockServer",
    "InvalidPackageName",
    "InvalidRequirement",
    "LockLost",
    "LockOrderError",
    "LockRequest",
    "LockServerError",
    "LockTimeout",
    "LockUpgradeError",
    "NotLockedError",
    "PruneReport",
    "SourceNotFound",
    "StoreWriteError",
    "UnsafePathError",
    "__version__",
    "canonical_name",
]

"""pkgcache: a package cache shared safely by threads and processes.

``Cache(root).reading(*packages)`` and ``Cache(root).exclusive(*packages)``
are reader/writer locks per package, correct across the threads of a process
and across processes, so workers on different packages never wait for each
other and nobody deletes what another worker is reading.
"""

from ._cache import DEFAULT_TIMEOUT, Cache, CacheTransaction, CacheView, LockRequest
from ._engine import Mode
from ._errors import (
    CacheError,
    CachePermissionError,
    EntryDamaged,
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
    NotACacheError,
    NotLockedError,
    SourceNotFound,
    SourcePermissionError,
    StoreWriteError,
    UnsafePathError,
)
from ._holders import Holder
from ._names import canonical_name
from ._processlock import LockStatistics
from ._records import CacheInfo, CleanReport, Entry, PruneReport
from ._timeouts import DefaultTimeout

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
    "DefaultTimeout",
    "Entry",
    "EntryDamaged",
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
    "LockStatistics",
    "LockTimeout",
    "LockUpgradeError",
    "Mode",
    "NotACacheError",
    "NotLockedError",
    "PruneReport",
    "SourceNotFound",
    "SourcePermissionError",
    "StoreWriteError",
    "UnsafePathError",
    "__version__",
    "canonical_name",
]

# Public names say where to import them from: ``pkgcache.LockTimeout``, not
# ``pkgcache._errors.LockTimeout``, in reprs, tracebacks, pickles and the API
# reference (trio does the same).
for _name in __all__:
    _value = globals()[_name]
    if callable(_value) and _value.__module__.startswith(f"{__name__}._"):
        _value.__module__ = __name__
del _name, _value

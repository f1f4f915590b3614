"""Per-package locks for a uv cache, shared with real uv processes.

uv locks its own cache with one file, ``<uv cache>/.lock`` (``flock``):
every uv command that uses the cache holds it **shared** for its whole run
(``uv pip install``, ``uv venv``, ``uv pip list``, ...), and ``uv cache
clean`` and ``uv cache prune`` take it **exclusive**, waiting for every other
uv process first. :class:`UvCache` attaches pkgcache to that folder:

========================  ====================  ===============================
call                      ``<uv cache>/.lock``  ``<locks dir>/<name>.lock``
========================  ====================  ===============================
``reading()``             shared                --
``reading("a")``          shared                shared on ``a``
``exclusive("a")``        shared                exclusive on ``a``
``exclusive()``           exclusive             -- (covers every package)
========================  ====================  ===============================

The whole-cache lock *is* uv's lock, so real uv processes and pkgcache wait
for each other: ``exclusive()`` waits for every running uv command and blocks
new ones; a plain ``uv cache clean`` waits while anyone holds ``reading()``.

Package locks live in a folder uv never looks at, by default the sibling
``<uv cache>.pkgcache-locks/``: ``uv cache prune`` deletes every top-level
file and folder of its cache it does not know (only ``.lock``,
``CACHEDIR.TAG``, ``.gitignore``, ``.git`` and its buckets survive) and
``uv cache clean`` deletes everything but ``.lock``, so locks kept inside
would vanish while held. Nothing but ``.lock`` is created inside the uv
cache.

The helpers run uv under the right locks:

* :meth:`UvCache.pip_install` holds ``reading(*packages)`` while ``uv pip
  install`` runs;
* :meth:`UvCache.clean` holds ``exclusive(*packages)`` while ``uv cache
  clean --force PKG`` runs, so it waits for the users of those packages
  only, not for every install of every package as a plain ``uv cache clean
  PKG`` does;
* :meth:`UvCache.prune` and :meth:`UvCache.clean_all` hold ``exclusive()``.

``--force`` is what lets uv run under a pkgcache lock: this process already
holds ``.lock`` (shared for ``clean``, exclusive for ``prune``), so uv's
own exclusive request would wait for its caller forever. With ``--force``
uv tries its lock once and, finding it busy, goes on without it; the
pkgcache lock taken by the helper is then the only exclusion.

**When a per-package clean is safe.** A clean under ``exclusive("a")``
excludes exactly the holders of ``reading("a")``. It is safe when
**every concurrent installer holds ``reading()`` of every package its
resolution may touch** (requirements, their dependencies and build
dependencies): a plain ``uv pip install``
started outside pkgcache, or one that does not name ``a``, is protected by
nothing, since ``--force`` bypasses uv's own lock. Beyond the package, uv's
``cache clean PKG`` also removes the **whole flat-index bucket** (cached
``--find-links`` pages fetched over HTTP, for every package; local
``--find-links`` folders are not cached there) and every archive that only
the removed entries referenced. An install that is writing a flat-index
entry at that moment can fail; when installers use remote ``--find-links``
URLs, clean with :meth:`UvCache.clean_all` or under ``exclusive()``.
``docs/uv.md`` lists what uv removes, bucket by bucket.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ._cache import Cache, CacheTransaction, CacheView
from ._errors import CacheError, InvalidPackageName, UnsafePathError
from ._holders import Holder
from ._timeouts import DEFAULT_TIMEOUT, DefaultTimeout

__all__ = ["LOCKS_SUFFIX", "UvCache", "UvCommandError", "UvNotFoundError", "find_uv"]

#: The default locks folder of a uv cache is its path plus this suffix.
LOCKS_SUFFIX = ".pkgcache-locks"

_ENV_CACHE_DIR = "UV_CACHE_DIR"
# Variables that would make uv use another cache than the one locked.
_ENV_DROPPED = ("UV_NO_CACHE",)


class UvNotFoundError(CacheError, FileNotFoundError):
    """No uv executable was found (see :func:`find_uv`)."""


class UvCommandError(CacheError, subprocess.CalledProcessError):
    """A uv command exited with a non-zero status.

    Also a :class:`subprocess.CalledProcessError`: ``returncode``, ``cmd``,
    ``stdout`` and ``stderr`` are set.
    """

    def __str__(self) -> str:
        message = super().__str__()
        detail = (self.stderr or "").strip()
        if detail:
            tail = "\n".join(detail.splitlines()[-20:])
            message += f"\nuv said:\n{tail}"
        return message


def find_uv() -> str:
    """The uv executable to run: the ``uv`` Python package's, else ``uv`` on PATH.

    The ``uv`` distribution on PyPI ships the binary and
    ``uv.find_uv_bin()``; an environment that installed it gets that exact
    version. Otherwise the first ``uv`` on ``PATH`` is used.

    Raises:
        UvNotFoundError: neither is available.
    """
    try:
        finder = importlib.import_module("uv")
        found = finder.find_uv_bin()
    except (ImportError, AttributeError, FileNotFoundError):
        found = None
    if isinstance(found, str) and os.path.isfile(found):
        return found
    on_path = shutil.which("uv")
    if on_path is None:
        raise UvNotFoundError(
            "no uv executable found: install the 'uv' package "
            "(pip install uv) or put uv on PATH, or pass uv=PATH"
        )
    return on_path


def _run(
    command: Sequence[str], env: Mapping[str, str], check: bool
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(command),
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise UvNotFoundError(f"cannot run {command[0]}: {exc}") from exc
    if check and result.returncode != 0:
        raise UvCommandError(
            result.returncode, result.args, result.stdout, result.stderr
        )
    return result


def _requirement_names(requirements: Sequence[str]) -> tuple[str, ...]:
    names = []
    for requirement in requirements:
        try:
            names.append(Requirement(requirement).name)
        except InvalidRequirement:
            raise InvalidPackageName(
                requirement,
                "not a requirement pkgcache can read a project name from; "
                "pass packages= to name the packages to lock",
            ) from None
    return tuple(names)


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class UvCache:
    """pkgcache locks on a uv cache folder, and uv commands run under them.

    Every process that works on the uv cache must use the same ``locks_dir``
    (the default is derived from the resolved uv cache path, so it agrees
    everywhere). Objects are cheap, safe to share between threads, and every
    :class:`UvCache` of one folder in a process shares one set of locks.

    Args:
        path: the uv cache folder. ``None`` asks uv (``uv cache dir``), which
            follows ``UV_CACHE_DIR``, uv's configuration and the platform
            default.
        locks_dir: where package locks live. Default: the sibling folder
            ``<uv cache>`` + :data:`LOCKS_SUFFIX`. It must not be inside the
            uv cache.
        uv: the uv executable; default :func:`find_uv`.
        timeout: default seconds to wait for a pkgcache lock; ``None``
            waits forever. (uv's own waits are bounded by uv:
            ``UV_LOCK_TIMEOUT``, 300 s by default.)

    Raises:
        UvNotFoundError: uv is needed (``path`` or ``uv`` not given) and
            cannot be found.
        UvCommandError: ``uv cache dir`` failed.
        UnsafePathError: ``locks_dir`` is inside the uv cache, or the uv
            cache is a file-system root (it has no sibling folder).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        locks_dir: str | os.PathLike[str] | None = None,
        uv: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._uv = os.fspath(uv) if uv is not None else None
        if path is None:
            path = _run([self.uv, "cache", "dir"], os.environ, check=True).stdout
            path = path.strip()
        self._path = Path(os.path.realpath(os.fspath(path)))
        if locks_dir is None:
            if self._path.parent == self._path:
                raise UnsafePathError(
                    self._path, "a file-system root has no sibling locks folder"
                )
            locks = self._path.with_name(self._path.name + LOCKS_SUFFIX)
        else:
            locks = Path(os.path.realpath(os.fspath(locks_dir)))
        if _is_inside(locks, self._path):
            raise UnsafePathError(
                locks,
                "package locks inside the uv cache would be deleted by "
                "'uv cache prune' and 'uv cache clean' while held",
            )
        self._locks_dir = locks
        self._cache = Cache._attach(self._path, locks, timeout=timeout)

    def __repr__(self) -> str:
        return f"UvCache({str(self._path)!r}, locks_dir={str(self._locks_dir)!r})"

    # -- what it is ------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The uv cache folder (resolved)."""
        return self._path

    @property
    def locks_dir(self) -> Path:
        """The folder of the package locks (resolved)."""
        return self._locks_dir

    @property
    def cache(self) -> Cache:
        """The :class:`~pkgcache.Cache` whose locks this object uses."""
        return self._cache

    @property
    def uv(self) -> str:
        """The uv executable the helpers run (found on first use)."""
        if self._uv is None:
            self._uv = find_uv()
        return self._uv

    # -- locks -----------------------------------------------------------------

    def reading(
        self, *packages: str, timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT
    ) -> CacheView:
        """Shared locks: uv's ``.lock``, and each package named.

        Blocks ``exclusive()`` of the same packages, :meth:`clean` of them,
        and whole-cache work: :meth:`prune`, :meth:`clean_all` and plain
        ``uv cache clean`` / ``uv cache prune`` commands. See
        :meth:`pkgcache.Cache.reading` for the arguments and errors.
        """
        return self._cache.reading(*packages, timeout=timeout)

    def exclusive(
        self, *packages: str, timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT
    ) -> CacheTransaction:
        """Exclusive locks on each package named, or on the whole uv cache.

        ``exclusive("a")`` holds uv's ``.lock`` shared and ``a`` exclusive:
        it waits for holders of ``reading("a")`` only. ``exclusive()`` holds
        uv's ``.lock`` exclusive: it waits for every running uv command and
        every pkgcache holder, and blocks them all. See
        :meth:`pkgcache.Cache.exclusive` for the arguments and errors.
        """
        return self._cache.exclusive(*packages, timeout=timeout)

    def holders(self, *packages: str) -> list[Holder]:
        """Who holds or waits for these locks; uv processes show up on ``.lock``."""
        return self._cache.holders(*packages)

    # -- running uv ------------------------------------------------------------

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment uv runs with.

        ``base`` (default ``os.environ``) with ``UV_CACHE_DIR`` set to this
        cache and ``UV_NO_CACHE`` removed.
        """
        env = dict(os.environ if base is None else base)
        for name in _ENV_DROPPED:
            env.pop(name, None)
        env[_ENV_CACHE_DIR] = str(self._path)
        return env

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``uv *args`` on this cache, taking no pkgcache lock.

        Output is captured as text. The caller chooses the locks; uv takes
        its own shared ``.lock`` as usual.

        Raises:
            UvCommandError: uv exited non-zero (when ``check``).
            UvNotFoundError: no uv executable.
        """
        return _run([self.uv, *args], self.environ(env), check)

    def pip_install(
        self,
        *requirements: str,
        python: str | os.PathLike[str] | None = None,
        packages: Iterable[str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """``uv pip install`` under ``reading()`` of the packages it uses.

        Args:
            requirements: requirement strings, e.g. ``"setuptools-scm==8.2.0"``.
            python: the interpreter or environment to install into
                (``--python``); ``None`` lets uv choose.
            packages: the packages to hold shared while uv runs. By default
                the names of ``requirements``. A per-package :meth:`clean`
                is safe only if this names every package the install may
                resolve, dependencies and build dependencies included.
            args: more ``uv pip install`` arguments, e.g.
                ``["--find-links", "wheels/", "--no-index"]``.
            env: the base environment (default ``os.environ``).
            timeout: seconds to wait for the locks (not for uv).

        Raises:
            InvalidPackageName: a requirement has no readable project name
                and ``packages`` is not given, or a name is invalid.
            LockTimeout: the locks were not granted in time; uv did not run.
            UvCommandError: uv failed.
        """
        if packages is None:
            names = _requirement_names(requirements)
        else:
            names = tuple(packages)
        command = ["pip", "install"]
        if python is not None:
            command += ["--python", os.fspath(python)]
        command += [*args, "--", *requirements]
        with self.reading(*names, timeout=timeout):
            return self.run(*command, env=env)

    def clean(
        self,
        *packages: str,
        env: Mapping[str, str] | None = None,
        timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """``uv cache clean --force PKG...`` under ``exclusive(*packages)``.

        Waits only for holders of ``reading()`` of these packages (and for
        whole-cache work), not for uv commands or pkgcache users of other
        packages. See the module documentation for when that is safe and
        what uv removes beyond the packages.

        Raises:
            ValueError: no package named (use :meth:`clean_all`).
            InvalidPackageName: a name is invalid (nothing runs).
            LockTimeout: the locks were not granted in time; uv did not run.
            UvCommandError: uv failed.
        """
        if not packages:
            raise ValueError("name the packages to clean, or use clean_all()")
        with self.exclusive(*packages, timeout=timeout) as txn:
            return self.run("cache", "clean", "--force", "--", *txn.packages, env=env)

    def clean_all(
        self,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """``uv cache clean --force`` under ``exclusive()``: empty the uv cache.

        Waits for every running uv command and pkgcache holder first. uv
        keeps ``.lock`` (this process holds it), so the lock survives.
        """
        with self.exclusive(timeout=timeout):
            return self.run("cache", "clean", "--force", env=env)

    def prune(
        self,
        *,
        ci: bool = False,
        env: Mapping[str, str] | None = None,
        timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """``uv cache prune --force [--ci]`` under ``exclusive()``.

        Waits for every running uv command and pkgcache holder first; the
        package locks are outside the uv cache, so prune leaves them alone.
        """
        command = ["cache", "prune", "--force"]
        if ci:
            command.append("--ci")
        with self.exclusive(timeout=timeout):
            return self.run(*command, env=env)

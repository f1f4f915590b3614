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

* :meth:`UvCache.pip_install` holds ``reading()`` of every package uv
  resolves for the install, build dependencies included (what uv's
  resolver says each package depends on is remembered; a dry run asks
  about packages never seen);
* :meth:`UvCache.clean` holds ``exclusive(*packages)`` while ``uv cache
  clean --force PKG`` runs, so it waits for the users of those packages
  only, not for every install of every package as a plain ``uv cache clean
  PKG`` does; cleans run one at a time (the *clean guard*);
* :meth:`UvCache.prune` and :meth:`UvCache.clean_all` hold ``exclusive()``.

``--force`` is what lets uv run under a pkgcache lock: this process already
holds ``.lock`` (shared for ``clean``, exclusive for ``prune``), so uv's
own exclusive request would wait for its caller forever. With ``--force``
uv tries its lock once and, finding it busy, goes on without it; the
pkgcache lock taken by the helper is then the only exclusion.

**Why cleans run one at a time.** ``uv cache clean PKG`` first notes which
unpacked wheels (``archive-v0/<id>``) are referenced, removes the package's
entries, then deletes every archive that lost all its references, whatever
package it belongs to. Two cleans of different packages at once delete each
other's archives and fail (``failed to remove file ...: No such file or
directory``). An archive an install is still writing is not referenced yet
when a clean starts, so a clean never deletes it. Beyond the package, uv's
``cache clean PKG`` also removes the **whole flat-index bucket** (cached
``--find-links`` pages fetched over HTTP, for every package; local
``--find-links`` folders are not cached there): an install writing a
flat-index entry at that moment fails, so an install with remote
``--find-links`` holds the clean guard.
``docs/uv.md`` lists what uv removes, bucket by bucket, and exactly what
:meth:`UvCache.pip_install` guarantees.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName

from ._cache import Cache, CacheTransaction, CacheView
from ._errors import CacheError, InvalidPackageName, UnsafePathError
from ._holders import Holder
from ._names import canonical_name, canonical_names
from ._timeouts import DEFAULT_TIMEOUT, DefaultTimeout, _resolve_timeout

__all__ = ["LOCKS_SUFFIX", "UvCache", "UvCommandError", "UvNotFoundError", "find_uv"]

#: The default locks folder of a uv cache is its path plus this suffix.
LOCKS_SUFFIX = ".pkgcache-locks"

_ENV_CACHE_DIR = "UV_CACHE_DIR"
# The uv cache of the dry runs that plan an install, in the locks folder.
_PLANNING_CACHE = "uv-plans"
# Variables that would make uv use another cache than the one locked.
_ENV_DROPPED = ("UV_NO_CACHE",)

# The clean guard: a lock in the package-lock folder that every clean takes
# exclusive and every install whose resolution is not known yet takes
# shared. ``uv cache clean PKG`` deletes every archive that lost its last
# reference, whatever package it belongs to, so two cleans of different
# packages delete each other's archives ("failed to remove file ...: No such
# file or directory", 149 of 300 cleans with 15 at once). "~" sorts after
# every valid project name, so the guard comes last in the global lock order
# and is taken in the same call as the package locks.
_CLEAN_GUARD = NormalizedName("~uv-clean")

# uv logs every package its resolver picks, build dependencies included, at
# debug level: "DEBUG Selecting: leaf==1.0 [compatible] (leaf-1.0-...whl)".
# RUST_LOG turns on that one target, not uv's whole debug output.
_RESOLVER_LOG = "uv_resolver=debug"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SELECTED = re.compile(
    r"^DEBUG Selecting: ([A-Za-z0-9][A-Za-z0-9._-]*)\S* \[[^]\n]*\] \(([^)\n]*)\)",
    re.MULTILINE,
)
# A source distribution is built during the install, and its build
# dependencies are resolved only then (the resolution of a dry run lists them
# only for an sdist whose metadata had to be built).
_SDIST = re.compile(r"\.(tar\.gz|tgz|tar\.bz2|tar\.xz|zip|tar)$")
_DEPENDS = re.compile(
    r"^DEBUG Adding transitive dependency for ([A-Za-z0-9][A-Za-z0-9._-]*)\S*?==\S+: "
    r"([A-Za-z0-9][A-Za-z0-9._-]*)",
    re.MULTILINE,
)
_RESOLVED = re.compile(r"^Resolved (\d+) packages?", re.MULTILINE)
_RESOLVER_LINE = re.compile(r"^(?:\x1b\[[0-9;]*m)*DEBUG\b.*\n?", re.MULTILINE)


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


def _remote_find_links(args: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether uv reads a ``--find-links`` page over HTTP.

    uv caches those pages in its flat-index bucket, which every ``uv cache
    clean PKG`` deletes whole.
    """
    found = environ.get("UV_FIND_LINKS", "").split()
    following = False
    for arg in args:
        if following:
            found.append(arg)
        elif arg.startswith("--find-links="):
            found.append(arg.partition("=")[2])
        elif arg.startswith("-f") and len(arg) > 2:
            found.append(arg[2:])
        following = arg in ("--find-links", "-f")
    return any(link.startswith(("http://", "https://")) for link in found)


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class _Resolution:
    """What uv's resolver picked, and what it said each pick depends on."""

    __slots__ = ("names", "requires", "sources")

    def __init__(
        self,
        names: frozenset[NormalizedName],
        requires: dict[NormalizedName, set[NormalizedName]],
        sources: frozenset[NormalizedName],
    ) -> None:
        self.names = names
        self.requires = requires
        #: Packages picked as source distributions (built at install time).
        self.sources = sources


def _project(found: str) -> NormalizedName:
    return canonical_name(found.rstrip("._-"))


def _read_resolution(stderr: str) -> _Resolution | None:
    """The resolution in uv's log, or ``None`` when the log cannot be trusted.

    It cannot when uv says it resolved more packages than the log names (a
    uv whose log reads differently), or names something that is no project.
    """
    text = _ANSI.sub("", stderr)
    try:
        picked = [(_project(name), source) for name, source in _SELECTED.findall(text)]
        edges = [(_project(a), _project(b)) for a, b in _DEPENDS.findall(text)]
    except InvalidPackageName:
        return None
    names = frozenset(name for name, _ in picked)
    resolved = _RESOLVED.search(text)
    if resolved is not None and len(names) < int(resolved.group(1)):
        return None
    requires: dict[NormalizedName, set[NormalizedName]] = {n: set() for n in names}
    for package, dependency in edges:
        requires.setdefault(package, set()).add(dependency)
    sources = frozenset(name for name, source in picked if _SDIST.search(source))
    return _Resolution(names, requires, sources)


class _Dependencies:
    """What uv's resolver said each package depends on, in this process.

    Learned from every install and dry run on one uv cache, the union over
    the versions seen. The packages an install will use are then the
    closure of its requirements, found without asking uv again.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        # One dry run at a time: threads that start together on packages
        # never seen mostly need the same answer (8 workers ran 13 dry runs,
        # 5 of them twice), and the machine's cores are busy anyway.
        self.planning = threading.Lock()
        self._requires: dict[NormalizedName, frozenset[NormalizedName]] = {}
        self._sources: frozenset[NormalizedName] = frozenset()

    def learn(
        self, resolution: _Resolution, requested: Iterable[NormalizedName] = ()
    ) -> None:
        """Add what uv said; ``requested`` names it did not pick need nothing.

        uv leaves out a requirement whose marker is false for the target
        (``tomli; python_version < "3.11"``): it uses nothing of it. Should
        another target pick it, its dependencies are learned then, and the
        check after that install catches what was not held.
        """
        with self._mutex:
            if resolution.names:
                for name in requested:
                    self._requires.setdefault(name, frozenset())
            for name, dependencies in resolution.requires.items():
                known = self._requires.get(name, frozenset())
                self._requires[name] = known | dependencies
            # Replaced, not updated: closure() reads it without the mutex.
            self._sources = self._sources | resolution.sources

    def closure(
        self, names: Iterable[NormalizedName]
    ) -> tuple[frozenset[NormalizedName], bool] | None:
        """Every package ``names`` lead to, and whether one is built from source.

        ``None`` if one of them was never seen resolved.
        """
        seen: set[NormalizedName] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            dependencies = self._requires.get(name)
            if dependencies is None:
                return None
            seen.add(name)
            todo.extend(dependencies)
        return frozenset(seen), bool(seen & self._sources)


_dependencies: dict[Path, _Dependencies] = {}
_dependencies_mutex = threading.Lock()


def _dependencies_of(path: Path) -> _Dependencies:
    with _dependencies_mutex:
        return _dependencies.setdefault(path, _Dependencies())


def _after_fork_in_child() -> None:
    # Another thread may have held a mutex at fork time; what was learned
    # stays true in the child.
    global _dependencies_mutex  # noqa: PLW0603 - the module's one mutex
    _dependencies_mutex = threading.Lock()
    for dependencies in _dependencies.values():
        dependencies._mutex = threading.Lock()
        dependencies.planning = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
        locks: a lock server's URL (``postgresql://...``) for a uv cache
            shared by several hosts, as :class:`~pkgcache.Cache` takes it;
            the cache identity lives in ``locks_dir``. uv's own
            ``<uv cache>/.lock`` is then not pkgcache's whole-cache lock:
            uv commands run outside this object exclude each other on one
            host only (see :doc:`postgres`).

    Raises:
        UvNotFoundError: uv is needed (``path`` or ``uv`` not given) and
            cannot be found.
        UvCommandError: ``uv cache dir`` failed.
        UnsafePathError: ``locks_dir`` is inside the uv cache, or the uv
            cache is a file-system root (it has no sibling folder).
        InvalidLockServer: ``locks`` is not a ``postgresql://`` URL, or the
            PostgreSQL driver is not installed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        locks_dir: str | os.PathLike[str] | None = None,
        uv: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        locks: str | None = None,
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
            folder = self._path.with_name(self._path.name + LOCKS_SUFFIX)
        else:
            folder = Path(os.path.realpath(os.fspath(locks_dir)))
        if _is_inside(folder, self._path):
            raise UnsafePathError(
                folder,
                "package locks inside the uv cache would be deleted by "
                "'uv cache prune' and 'uv cache clean' while held",
            )
        self._locks_dir = folder
        self._cache = Cache._attach(
            self._path, self._locks_dir, timeout=timeout, locks=locks
        )
        self._dependencies = _dependencies_of(self._path)

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
        self,
        *packages: str,
        reading: Iterable[str] = (),
        timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> CacheTransaction:
        """Exclusive locks on each package named, or on the whole uv cache.

        ``exclusive("a")`` holds uv's ``.lock`` shared and ``a`` exclusive:
        it waits for holders of ``reading("a")`` only. ``exclusive("a",
        reading=deps)`` also holds ``deps`` shared, in the same call: the
        builder's pattern (write my package, read my build dependencies).
        ``exclusive()`` holds uv's ``.lock`` exclusive: it waits for every
        running uv command and every pkgcache holder, and blocks them all.
        See :meth:`pkgcache.Cache.exclusive` for the arguments and errors.
        """
        return self._cache.exclusive(*packages, reading=reading, timeout=timeout)

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
        """``uv pip install`` under ``reading()`` of every package it resolves.

        By default no :meth:`clean` can break, corrupt or undo the
        invalidation of the install, dependencies and build dependencies
        included, and installs never wait for cleans of packages they do not
        use:

        * the install holds ``reading()`` of every package it will use, for
          its whole run: it waits for :meth:`clean` and ``exclusive()`` of
          any of them, and they wait for it;
        * those packages are the closure of the requirements over what uv's
          resolver said each package depends on, in every install and dry
          run on this uv cache in this process. When a requirement or a
          dependency was never seen, uv is asked first: ``uv pip install
          --dry-run`` on a uv cache of its own (``uv-plans`` in the locks
          folder), which touches nothing in this cache and takes no lock
          on it;
        * when one of them is a source distribution (its build dependencies
          are resolved only while building it), or uv gave no readable
          plan, or ``--find-links`` (or ``UV_FIND_LINKS``) names a URL (uv
          caches those pages in one bucket that every clean deletes), the
          install also holds the *clean guard* shared: no :meth:`clean` of
          any package runs during it;
        * after every install uv's log is checked against what was locked.
          If uv picked more (e.g. a new release with a new dependency),
          those packages are cleaned again, since uv may have put back what
          a concurrent clean removed, and reinstalled under the clean guard.

        Args:
            requirements: requirement strings, e.g. ``"setuptools-scm==8.2.0"``.
            python: the interpreter or environment to install into
                (``--python``); ``None`` lets uv choose.
            packages: the explicit override: hold exactly these packages
                shared (and the clean guard for remote ``--find-links``),
                learn nothing and check nothing. A per-package
                :meth:`clean` is then safe only if this names every package
                the install may resolve, dependencies and build dependencies
                included.
            args: more ``uv pip install`` arguments, e.g.
                ``["--find-links", "wheels/", "--no-index"]``.
            env: the base environment (default ``os.environ``).
            timeout: seconds to wait for each set of locks (not for uv).

        Raises:
            InvalidPackageName: a requirement has no readable project name
                and ``packages`` is not given, or a name is invalid.
            LockTimeout: the locks were not granted in time; uv did not
                run. Or, for a resolution that grew, the locks of the repair
                were not granted: uv ran, unchecked (what it picked is
                learned all the same).
            LockOrderError: called inside a hold of this thread that does
                not already cover what the install needs (name the packages
                in the outer call, see :meth:`exclusive`).
            UvCommandError: uv failed.
        """
        command = ["pip", "install"]
        if python is not None:
            command += ["--python", os.fspath(python)]
        environ = self.environ(env)
        # uv writes pages of remote --find-links into its flat-index bucket,
        # which a clean of any package deletes whole: measured, 8 of 75
        # installs failed ("failed to write to file .../flat-index-v7/html/
        # .tmp...: No such file or directory") beside cleans of another one.
        remote = _remote_find_links(args, environ)
        if packages is not None:
            with self._request(
                packages, exclusive=False, guard=remote, timeout=timeout
            ):
                return self.run(*command, *args, "--", *requirements, env=env)
        names = frozenset(canonical_names(_requirement_names(requirements)))
        known = self._dependencies.closure(names)
        if known is None:
            with self._dependencies.planning:
                known = self._plan(command, args, requirements, environ, names)
        # Without a plan, or with sources to build (whose build dependencies
        # uv resolves only then), no clean may run meanwhile.
        guard = known is None or known[1] or remote
        locked = names | known[0] if known is not None else names
        install = [*command, *args, "--", *requirements]
        result, resolved = self._install_holding(
            locked, guard, install, environ, timeout, requested=names
        )
        if resolved is not None and not guard and not resolved.names <= locked:
            # uv picked packages this install did not hold (a release with a
            # new dependency since it was learned): a clean of one of them
            # may have run meanwhile. Clean them again, since uv may have put
            # back what that clean removed, and reinstall them while no clean
            # runs.
            grown = sorted(resolved.names - locked)
            self.clean(*grown, env=env, timeout=timeout)
            again = [*command, *args]
            for name in grown:
                again += ["--reinstall-package", name]
            result, _ = self._install_holding(
                locked | resolved.names,
                True,
                [*again, "--", *requirements],
                environ,
                timeout,
                requested=names,
            )
        if result.returncode != 0:
            raise UvCommandError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result

    def _plan(
        self,
        command: Sequence[str],
        args: Sequence[str],
        requirements: Sequence[str],
        environ: Mapping[str, str],
        names: frozenset[NormalizedName],
    ) -> tuple[frozenset[NormalizedName], bool] | None:
        """What an install of ``names`` will use, asking uv if need be."""
        known = self._dependencies.closure(names)  # learned while we waited?
        if known is not None:
            return known
        # A dry run on a cache of its own tells what to lock: it touches
        # nothing in this cache, so it needs no lock here. (That cache keeps
        # what uv learned about the interpreter: with --no-cache uv asks the
        # interpreter anew and the dry run takes twice as long.)
        planning = dict(environ)
        planning[_ENV_CACHE_DIR] = str(self._locks_dir / _PLANNING_CACHE)
        _, planned = self._run_resolving(
            [*command, "--dry-run", *args, "--", *requirements], planning
        )
        if planned is None:
            return None
        self._dependencies.learn(planned, names)
        known = self._dependencies.closure(names)
        if known is None and not planned.names:
            # Nothing to resolve: the environment has it all, and uv reads
            # nothing from the cache.
            return frozenset(), False
        return known

    def _install_holding(
        self,
        locked: frozenset[NormalizedName],
        guard: bool,
        arguments: Sequence[str],
        environ: dict[str, str],
        timeout: float | DefaultTimeout | None,
        *,
        requested: frozenset[NormalizedName],
    ) -> tuple[subprocess.CompletedProcess[str], _Resolution | None]:
        """Run a ``uv pip install`` under these locks; learn what it resolved."""
        with self._request(locked, exclusive=False, guard=guard, timeout=timeout):
            result, resolved = self._run_resolving(arguments, environ)
        if resolved is not None:
            self._dependencies.learn(resolved, requested)
        return result, resolved

    def _run_resolving(
        self, arguments: Sequence[str], environ: dict[str, str]
    ) -> tuple[subprocess.CompletedProcess[str], _Resolution | None]:
        """Run uv with its resolver's log on.

        Returns the output without that log, and what the resolver picked
        (``None`` if the log cannot be read).
        """
        mine = environ.get("RUST_LOG")
        environ = dict(environ)
        environ["RUST_LOG"] = f"{mine},{_RESOLVER_LOG}" if mine else _RESOLVER_LOG
        result = _run([self.uv, *arguments], environ, check=False)
        resolution = _read_resolution(result.stderr)
        if not mine:
            result = subprocess.CompletedProcess(
                result.args,
                result.returncode,
                result.stdout,
                _RESOLVER_LINE.sub("", result.stderr),
            )
        return result, resolution

    def _request(
        self,
        names: Iterable[str],
        *,
        exclusive: bool,
        guard: bool,
        timeout: float | DefaultTimeout | None,
    ) -> CacheView:
        """``reading()``/``exclusive()`` of ``names``, and of the clean guard.

        The guard is a lock like a package's, under a name no package can
        have, so one call takes all of them in the global order.
        """
        packages = canonical_names(tuple(names))
        if guard:
            packages = (*packages, _CLEAN_GUARD)
        limit = _resolve_timeout(timeout, self._cache.timeout)
        kind = CacheTransaction if exclusive else CacheView
        return kind(self._cache, packages, exclusive, limit)

    def clean(
        self,
        *packages: str,
        env: Mapping[str, str] | None = None,
        timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """``uv cache clean --force PKG...`` under ``exclusive(*packages)``.

        Waits only for holders of ``reading()`` of these packages (and for
        whole-cache work), not for uv commands or pkgcache users of other
        packages. Cleans run one at a time on a uv cache (they hold the
        clean guard exclusive): uv's clean of one package deletes the
        archives every other package lost, so two at once delete each
        other's files. See the module documentation for what uv removes
        beyond the packages.

        Raises:
            ValueError: no package named (use :meth:`clean_all`).
            InvalidPackageName: a name is invalid (nothing runs).
            LockTimeout: the locks were not granted in time; uv did not run.
            UvCommandError: uv failed.
        """
        if not packages:
            raise ValueError("name the packages to clean, or use clean_all()")
        names = canonical_names(packages)
        with self._request(names, exclusive=True, guard=True, timeout=timeout):
            return self.run("cache", "clean", "--force", "--", *names, env=env)

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

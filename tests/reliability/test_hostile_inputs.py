"""Hostile names and hostile file-system objects: nothing outside the root.

Every test here watches the folder around the cache root (a sentinel file,
a folder with a file in it, everything else there): nothing outside the
root may be created, changed, truncated or deleted, whatever is planted
inside it, and whenever it is planted.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pkgcache
from pkgcache import _oslock
from tests.helpers import LockServer
from tests.reliability.support import WAIT, OutsideWatch, scaled, soak_seconds

pytestmark = pytest.mark.reliability

_examples = itertools.count()

LOCK_FILE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*\.(lock|gate)\Z")

HOSTILE_NAMES = [
    "..",
    ".",
    "../outside-dir/kept.txt",
    "a/../../sentinel.txt",
    "../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "..\\..\\sentinel.txt",
    "\0",
    "a\0b",
    "a\0/../x",
    "a\uff0fb",  # FULLWIDTH SOLIDUS
    "\uff0e\uff0e\uff0fsentinel",  # fullwidth "../"
    "a\u2215b",  # DIVISION SLASH
    "a\u2044b",  # FRACTION SLASH
    "\u0430",  # CYRILLIC SMALL LETTER A
    "p\u0430ckage",
    "\u0455etuptools",  # CYRILLIC DZE, looks like "s"
    "a\u200bb",  # ZERO WIDTH SPACE
    "a\u0338",  # COMBINING SOLIDUS OVERLAY
    "e\u0301",  # combining accent
    "a\nb",
    "a\tb",
    " a",
    "a ",
    "-rf",
    "--help",
    "~",
    "$HOME",
    "*",
    "a;b",
    "a:b",
    "x" * 201,
    "x" * 100_000,
    "",
]

# Valid project names that Windows reserves as device names, and long ones:
# on POSIX they are ordinary names and must stay ordinary files in locks/.
VALID_ODD_NAMES = {
    "con": "con",
    "NUL": "nul",
    "aux.txt": "aux-txt",
    "LPT1": "lpt1",
    "com9": "com9",
    "A" * 200: "a" * 200,
    "a..b": "a-b",
    "A_.-b": "a-b",
    "0": "0",
}


@pytest.fixture
def watched(tmp_path):
    root = tmp_path / "cache"
    watch = OutsideWatch(tmp_path, root)
    yield root, watch
    watch.check()


def _lock_dir_is_clean(root):
    names = set(os.listdir(root / "locks"))
    names.discard(".root.gate")
    bad = [name for name in names if not LOCK_FILE.match(name)]
    assert bad == [], f"unexpected files in locks/: {bad}"


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=ascii)
def test_hostile_names_are_refused_before_any_io(watched, name):
    root, _ = watched
    cache = pkgcache.Cache(root)
    for call in (cache.reading, cache.exclusive):
        with pytest.raises(pkgcache.InvalidPackageName):
            call("ok", name)
    with pytest.raises(pkgcache.InvalidPackageName):
        cache.lock_path(name)
    with pytest.raises(pkgcache.InvalidPackageName):
        cache.holders(name)
    assert not root.exists()


def test_non_string_names_are_refused(watched):
    root, watch = watched
    cache = pkgcache.Cache(root)
    for name in (None, 1, b"a", watch.sentinel, ["a"], ("a",)):
        with pytest.raises(pkgcache.InvalidPackageName):
            cache.exclusive(name)
    assert not root.exists()


@pytest.mark.parametrize(("name", "canonical"), VALID_ODD_NAMES.items(), ids=ascii)
def test_odd_but_valid_names_stay_plain_files_in_locks(watched, name, canonical):
    root, _ = watched
    cache = pkgcache.Cache(root)
    if sys.platform == "win32" and canonical in ("con", "nul", "lpt1", "com9"):
        pytest.skip("reserved on Windows: refused there")
    with cache.exclusive(name, timeout=WAIT), cache.reading():
        pass
    assert (root / "locks" / f"{canonical}.lock").is_file()
    assert cache.lock_path(name) == root / "locks" / f"{canonical}.lock"
    _lock_dir_is_clean(root)


@pytest.mark.timeout(120)
@settings(
    max_examples=scaled(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.one_of(
        st.text(max_size=40),
        st.text(alphabet="./\\\0-_ aZ9\uff0f\u0430~:", max_size=12),
        st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,30}[A-Za-z0-9])?", fullmatch=True),
    )
)
def test_any_name_is_refused_or_one_plain_lock_file(tmp_path, name):
    """Whatever the string: an error before I/O, or locks/<canonical>.lock."""
    base = tmp_path / f"example{next(_examples)}"
    base.mkdir()
    root = base / "cache"
    watch = OutsideWatch(base, root)
    cache = pkgcache.Cache(root)
    try:
        canonical = pkgcache.canonical_name(name)
    except pkgcache.InvalidPackageName:
        with pytest.raises(pkgcache.InvalidPackageName):
            cache.exclusive(name)
        assert not root.exists()
    else:
        with cache.exclusive(name, timeout=WAIT):
            pass
        assert sorted(os.listdir(root / "locks")) == sorted(
            [".root.gate", f"{canonical}.lock", f"{canonical}.gate"]
        )
        _lock_dir_is_clean(root)
        del cache
    watch.check()
    shutil.rmtree(base)


# -- objects planted in the root --------------------------------------------------


def _plant(path, kind, watch):
    """Put a hostile object at ``path``; links point outside the root."""
    if kind == "symlink to file":
        path.symlink_to(watch.sentinel)
    elif kind == "symlink to folder":
        path.symlink_to(watch.outside_dir, target_is_directory=True)
    elif kind == "dangling symlink":
        path.symlink_to(watch.folder / "created-by-attack")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "file":
        path.write_text("not what pkgcache made")
    else:  # pragma: no cover
        raise AssertionError(kind)


PLANTS = [
    "symlink to file",
    "symlink to folder",
    "dangling symlink",
    "directory",
    "fifo",
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", [k for k in PLANTS if k != "directory"] + ["file"])
def test_locks_folder_planted_before_first_use(watched, kind):
    root, watch = watched
    root.mkdir()
    _plant(root / "locks", kind, watch)
    with pytest.raises(pkgcache.UnsafePathError):
        with pkgcache.Cache(root).reading("a", timeout=1):
            pass


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", PLANTS)
@pytest.mark.parametrize("where", [".root.gate", "a.gate", "a.lock", ".lock"])
def test_lock_and_gate_files_planted_before_first_use(watched, kind, where):
    root, watch = watched
    (root / "locks").mkdir(parents=True)
    path = root / where if where == ".lock" else root / "locks" / where
    _plant(path, kind, watch)
    with pytest.raises(pkgcache.UnsafePathError) as info:
        with pkgcache.Cache(root).exclusive("a", timeout=1):
            pass
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", PLANTS)
def test_cachedir_tag_planted_is_left_alone(watched, kind):
    root, watch = watched
    root.mkdir()
    _plant(root / "CACHEDIR.TAG", kind, watch)
    # Not pkgcache's tag: the folder is not taken as a cache unless adopted.
    with pytest.raises(pkgcache.NotACacheError):
        pkgcache.Cache(root)
    with pkgcache.Cache(root, adopt=True).exclusive("a", timeout=1):
        pass


# -- swapped between check and use ---------------------------------------------------


def _forget_space(cache):
    """A new Cache object on the same root, after the old one's descriptors closed.

    The caller drops its old object (``cache = _forget_space(cache)``): with
    no Cache object left on the root, the next call opens everything again.
    """
    root = cache.root
    cache.close()
    del cache
    return pkgcache.Cache(root)


class _Swapper:
    """A thread that keeps replacing one path with hostile objects."""

    KINDS = ("symlink to file", "dangling symlink", "directory", "fifo", "gone")

    def __init__(self, path, watch, regular):
        self.path = path
        self.watch = watch
        self.regular = regular  # what pkgcache itself would put there
        self.stop = threading.Event()
        self.swaps = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="swapper")

    def _remove(self):
        while True:
            try:
                if self.path.is_dir() and not self.path.is_symlink():
                    shutil.rmtree(self.path)
                else:
                    self.path.unlink()
            except FileNotFoundError:
                return
            except OSError as exc:
                # pkgcache created a file in it, or the folder, meanwhile.
                if exc.errno in (errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                    continue
                raise
            return

    def _swap_in(self, kind):
        while True:
            self._remove()
            try:
                if kind == "regular file":
                    self.path.touch()
                elif kind == "regular folder":
                    self.path.mkdir()
                elif kind != "gone":
                    _plant(self.path, kind, self.watch)
            except FileExistsError:
                continue  # pkgcache recreated it meanwhile: remove it again
            return

    def _run(self):
        try:
            while not self.stop.is_set():
                for kind in (*self.KINDS, self.regular):
                    self._swap_in(kind)
                    self.swaps += 1
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.errors.append(exc)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        assert self.errors == []
        self._remove()


@pytest.mark.timeout(60 + 2 * soak_seconds())
@pytest.mark.parametrize(
    "where", ["locks/a.lock", "locks/a.gate", "locks/.root.gate", ".lock", "locks"]
)
def test_paths_swapped_while_locks_are_taken(watched, where):
    """Acquire again and again while another thread swaps the path.

    Each call either works or raises a :class:`CacheError`; it never
    follows a link out of the root, never blocks on a FIFO, and never
    creates, truncates or removes anything outside.
    """
    root, watch = watched
    cache = pkgcache.Cache(root)
    with cache.exclusive("a", timeout=WAIT):
        pass
    path = root / where
    regular = "regular folder" if where == "locks" else "regular file"
    outcomes: dict[str, int] = {}
    calls = scaled(300)
    give_up = time.monotonic() + 4 * soak_seconds()
    with _Swapper(path, watch, regular) as swapper:
        i = 0
        # Enough calls, and enough of them refused (the swapper may get
        # little time on a busy machine), within a bounded time.
        while time.monotonic() < give_up and (
            i < calls or outcomes.get("UnsafePathError", 0) < 20
        ):
            i += 1
            cache = _forget_space(cache)
            request = cache.exclusive if i % 2 else cache.reading
            try:
                with request("a", timeout=0.05):
                    outcome = "granted"
            except pkgcache.LockTimeout:
                outcome = "timeout"
            except pkgcache.CacheError as exc:
                outcome = type(exc).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"{where}: {outcomes}, swaps: {swapper.swaps}")
    assert not (watch.folder / "created-by-attack").exists()
    assert watch.sentinel.read_text() == "precious"
    # Only our own kinds of error, and refusals did happen.
    assert set(outcomes) <= {
        "granted",
        "timeout",
        "UnsafePathError",
        "CachePermissionError",
        "CacheError",
    }
    assert outcomes.get("UnsafePathError", 0) > 0
    # Once the attacker stops, the cache works again (after the planted object
    # is gone, pkgcache recreates what it needs).
    with cache.exclusive("a", timeout=WAIT), cache.reading("b", timeout=WAIT):
        pass


# -- regressions found by the tests above ------------------------------------------


def test_holders_validates_names_before_any_io(watched):
    """Regression: holders("../x") created the cache root before refusing."""
    root, _ = watched
    with pytest.raises(pkgcache.InvalidPackageName):
        pkgcache.Cache(root).holders("../x")
    assert not root.exists()


def test_unhashable_name_is_an_invalid_name(watched):
    """Regression: a list raised TypeError from the name cache."""
    root, _ = watched
    with pytest.raises(pkgcache.InvalidPackageName):
        pkgcache.Cache(root).reading(["a"])


@pytest.mark.parametrize("package", ["a", "b"])
def test_locks_folder_removed_while_idle_is_made_again(watched, package):
    """The locks folder deleted while nobody held a lock: a new process would
    make a new one and lock new files, so this process must meet it there.

    Regression: ``a.lock`` stayed open on the deleted file, and this process
    was granted ``exclusive("a")`` while a new process held it.
    """
    root, watch = watched
    cache = pkgcache.Cache(root)
    with cache.exclusive("a", timeout=WAIT):
        pass
    shutil.rmtree(root / "locks")
    server = LockServer(str(root))
    try:
        server.hold("x", package)
        with pytest.raises(pkgcache.LockTimeout):
            with cache.exclusive(package, timeout=0.2):
                pass
        server.release()
        with cache.exclusive(package, timeout=WAIT):
            assert server.call("try", "r", [package], 0) is not True
    finally:
        server.close()
    assert (root / "locks" / f"{package}.lock").is_file()
    watch.check()


def test_cache_root_removed_while_in_use_fails_clearly(watched):
    """The root deleted under a process: its call fails with a CacheError
    (regression: a raw FileNotFoundError); a later call meets the new root."""
    root, _ = watched
    cache = pkgcache.Cache(root)
    with cache.exclusive("a", timeout=WAIT):
        pass
    shutil.rmtree(root)
    with pytest.raises(pkgcache.CacheError, match="removed"):
        with cache.exclusive("b", timeout=WAIT):
            pass
    with cache.exclusive("b", timeout=WAIT):
        pass
    assert (root / "locks" / "b.lock").is_file()


def test_without_folder_descriptors_lock_files_stay_in_the_root(
    watched, monkeypatch, tmp_path
):
    """Regression: without dir_fd (Windows), bare lock names were opened in
    the working directory, outside the root."""
    root, _ = watched
    cwd = tmp_path / "outside-dir"
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(_oslock, "HAVE_DIR_FD", False)
    cache = pkgcache.Cache(root)
    with cache.exclusive("a", timeout=WAIT), cache.reading("b", timeout=WAIT):
        pass
    assert sorted(os.listdir(cwd)) == ["kept.txt"]
    assert (root / "locks" / "a.lock").is_file()
    assert (root / ".lock").is_file()

"""Close, after each test, the cache folders and lock files it opened.

pkgcache keeps each root's folders open for the life of the process, and
up to ``MAX_IDLE_LOCKS`` idle locks (three descriptors each). A tier that
opens hundreds of roots would otherwise leave the pytest process with
descriptor numbers past 1024, where ``select()`` fails in later tests.
"""

from __future__ import annotations

import pytest

from pkgcache import _cache, _oslock


@pytest.fixture(autouse=True)
def _close_spaces_opened_by_the_test():
    before = set(_cache._spaces)
    yield
    for key in set(_cache._spaces) - before:
        space = _cache._spaces.pop(key)
        locks = [space.root_lock, *space._packages.values()]
        for lock in locks:
            lock.close_if_idle()
            _cache._table._open.discard(lock)
        _oslock.close(space.root_dir.fd)
        _oslock.close(space.locks_dir.fd)
        ids = {id(lock) for lock in locks}
        _cache._table._all[:] = [x for x in _cache._table._all if id(x) not in ids]

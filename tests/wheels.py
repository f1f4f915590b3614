"""Build tiny, valid wheels for tests, with nothing but the standard library.

``make_wheel(folder, "setuptools-scm", "8.2.0")`` writes
``folder/setuptools_scm-8.2.0-py3-none-any.whl``: a pure-Python wheel with one
module and a complete ``*.dist-info`` (``METADATA``, ``WHEEL``, ``RECORD``
with hashes), so pip and uv install it offline with ``--find-links folder
--no-index``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["make_blocking_sdist", "make_sdist", "make_wheel", "wheel_filename"]

# A fixed timestamp so the same inputs give byte-identical wheels.
_DATE_TIME = (2020, 1, 1, 0, 0, 0)


def _escape(name: str) -> str:
    """The file-name form of a project name (binary distribution format)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_filename(name: str, version: str) -> str:
    """``{name}-{version}-py3-none-any.whl`` with ``name`` escaped."""
    return f"{_escape(name)}-{version}-py3-none-any.whl"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"{path},sha256={digest.decode()},{len(data)}"


def _metadata(name: str, version: str, requires: Iterable[str]) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    return ("\n".join(lines) + "\n").encode()


def make_wheel(
    folder: str | os.PathLike[str],
    name: str,
    version: str,
    *,
    requires: Iterable[str] = (),
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a pure-Python wheel of ``name`` ``version`` into ``folder``.

    Args:
        folder: where the ``.whl`` goes (created if missing).
        name: the project name, any spelling.
        version: the version string, written as given.
        requires: ``Requires-Dist`` lines, e.g. ``["dep>=1"]``.
        files: paths inside the wheel and their contents. By default one
            module, ``<escaped name>/__init__.py``, that records the version.

    Returns:
        The path of the wheel.
    """
    module = _escape(name)
    dist_info = f"{module}-{version}.dist-info"
    if files is None:
        files = {f"{module}/__init__.py": f'__version__ = "{version}"\n'.encode()}
    metadata = _metadata(name, version, requires)
    wheel = (
        b"Wheel-Version: 1.0\n"
        b"Generator: pkgcache-tests\n"
        b"Root-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    contents = dict(files)
    contents[f"{dist_info}/METADATA"] = metadata
    contents[f"{dist_info}/WHEEL"] = wheel
    record = [_record_line(path, data) for path, data in contents.items()]
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    path = target / wheel_filename(name, version)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in contents.items():
            info = zipfile.ZipInfo(member, date_time=_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return path


_BACKEND = '''\
"""A PEP 517 backend that builds this project with ``_wheels`` (tests only)."""

from _wheels import make_wheel

NAME = {name!r}
VERSION = {version!r}


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return make_wheel(wheel_directory, NAME, VERSION).name
'''

_BLOCKING_BACKEND = '''\
"""A PEP 517 backend that waits for the test before it builds (tests only)."""

import socket

from _wheels import make_wheel

NAME = {name!r}
VERSION = {version!r}
SOCKET = {socket!r}


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(SOCKET)
        connection.sendall(b"building")
        connection.recv(16)  # the test says when to go on
    return make_wheel(wheel_directory, NAME, VERSION).name
'''


def make_sdist(
    folder: str | os.PathLike[str],
    name: str,
    version: str,
    *,
    requires: Iterable[str] = (),
    backend: str | None = None,
) -> Path:
    """Write an sdist of ``name`` with an in-tree PEP 517 backend.

    Args:
        folder: where the ``.tar.gz`` goes (created if missing).
        name: the project name.
        version: the version string.
        requires: its ``[build-system] requires``.
        backend: the source of its ``backend`` module; by default one that
            builds a wheel at once with :func:`make_wheel` (the sdist
            carries this file as ``_wheels.py``).
    """
    base = f"{_escape(name)}-{version}"
    listed = ", ".join(f'"{requirement}"' for requirement in requires)
    pyproject = (
        "[build-system]\n"
        f"requires = [{listed}]\n"
        'build-backend = "backend"\n'
        'backend-path = ["."]\n'
        "\n[project]\n"
        f'name = "{name}"\n'
        f'version = "{version}"\n'
    )
    if backend is None:
        backend = _BACKEND.format(name=name, version=version)
    members = {
        "pyproject.toml": pyproject.encode(),
        "PKG-INFO": _metadata(name, version, ()),
        "backend.py": backend.encode(),
        "_wheels.py": Path(__file__).read_bytes(),
    }
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{base}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members.items():
            info = tarfile.TarInfo(f"{base}/{member}")
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


def make_blocking_sdist(
    folder: str | os.PathLike[str], name: str, version: str, socket_address: str
) -> Path:
    """Write an sdist whose build waits for a word from the test.

    Its in-tree build backend needs no other package. ``build_wheel``
    connects to the Unix socket ``socket_address`` (an abstract address such
    as ``"\\0name"`` works), sends ``b"building"``, and builds only after it
    receives a message (or the connection closes). So a real ``uv pip
    install`` of it stays in flight, holding uv's cache lock, until the test
    lets it go.
    """
    backend = _BLOCKING_BACKEND.format(
        name=name, version=version, socket=socket_address
    )
    return make_sdist(folder, name, version, backend=backend)

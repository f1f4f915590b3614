"""The in-tree PEP 517 backend of the packages ``build_farm.py`` generates.

``build_farm.py`` copies this file into every sdist it makes, beside a
``farm.json`` that names the project, its version, its build dependencies
and the round of the farm. The backend needs nothing but the standard
library: ``build_wheel`` imports each build dependency (so they must have
been installed into the build environment) and writes a valid wheel, with
a ``RECORD`` of sha256 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import zipfile
from pathlib import Path
from typing import Any

CONFIG = json.loads(Path(__file__).with_name("farm.json").read_text())


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    return []


def build_wheel(
    wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None
) -> str:
    # The build dependencies must be installed: import each one.
    built_with = {
        dep: importlib.import_module(dep.replace("-", "_")).ROUND
        for dep in CONFIG["deps"]
    }
    name, version, module = CONFIG["name"], CONFIG["version"], CONFIG["module"]
    round_line = f"ROUND = {CONFIG['round']}\n"
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"{round_line}BUILT_WITH = {built_with!r}\n".encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: farm_backend\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    for index in range(CONFIG["modules"]):
        files[f"{module}/part{index:03d}.py"] = round_line.encode() * 20
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record += f"{path},sha256={digest.decode()},{len(data)}\n"
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    wheel = f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory, wheel), "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel

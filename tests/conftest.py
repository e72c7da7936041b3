"""Shared fixtures: paths to the real anime pictures kept beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
# The real test pictures live outside the repository; ANIMEFACE_SHARED overrides the path.
SHARED_DIR = Path(os.environ.get("ANIMEFACE_SHARED", REPO_ROOT.parent / "shared"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED_DIR / "data").is_dir():
        pytest.fail(
            f"real test data not found at {SHARED_DIR}/data; "
            "set ANIMEFACE_SHARED to the folder that contains data/ and models/"
        )
    return SHARED_DIR


@pytest.fixture(scope="session")
def raw_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "raw"


@pytest.fixture(scope="session")
def faces_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "faces"


@pytest.fixture(scope="session")
def cascade_path(shared_dir: Path) -> Path:
    return shared_dir / "models" / "lbpcascade_animeface.xml"


@pytest.fixture(autouse=True)
def loopback_only_network(monkeypatch):
    """Fail any in-process connection to a host other than loopback."""
    import ipaddress
    import socket

    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise ConnectionRefusedError(f"tests may only connect to loopback, not {host}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)

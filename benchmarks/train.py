"""Training throughput benchmark: our trainer against a bare torchvision loop.

On the real-object set of :mod:`_realobjects` (real coins and a real flower on
real photographs, 256 x 256 images, objects of 24-56 px), the small preset with
our defaults (the magnification and SSD anchors the trainer chooses from the
box sizes), our trainer's images/s (augmentation on, hooks, history; the
per-epoch held-out score excluded) against a bare loop of the *same* network
(torch DataLoader reading the same tiles with PIL, AdamW, no augmentation, no
hooks), in alternating rounds so both see the same machine load. Also the share
of time the model waits for data with 0, 1 and 2 reader threads.

How well and how fast the defaults learn, against Ultralytics YOLO11n, is
``benchmarks/quality.py``.

Usage::

    python benchmarks/train.py            # about 3-4 minutes on 2 CPU cores
    python benchmarks/train.py --quick    # one round

Other processes on the machine distort the figures (torch's worker threads stall
when the cores are oversubscribed); run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _realobjects import build_set  # noqa: E402
from PIL import Image  # noqa: E402

from deepblock_nb.ml.checkpoints import load_checkpoint  # noqa: E402
from deepblock_nb.ml.data import TileItem, collate  # noqa: E402
from deepblock_nb.ml.models import build_model  # noqa: E402
from deepblock_nb.ml.train import TrainConfig, train_detector  # noqa: E402


class Quiet:
    """A job stand-in that keeps the history rows."""

    should_stop = False

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        pass

    def add_history(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)


def items_of(samples: list[Any]) -> list[TileItem]:
    """One tile per image (the images are tile-sized)."""
    return [
        TileItem(s.path, (0, 0, *s.size), np.asarray(s.xyxy, np.float64), s.category_ids, s.size)
        for s in samples
    ]


class BareTiles(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """What a hand-written loop does: open the file, crop the tile, to tensor (the
    network magnifies it itself, as it does for our trainer)."""

    def __init__(self, items: list[TileItem]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from deepblock_nb.core.tiling import clip_boxes_to_window

        it = self.items[i]
        x, y, w, h = it.window
        with Image.open(it.image_path) as im:
            crop = im.convert("RGB").crop((x, y, x + w, y + h))
        local, idx = clip_boxes_to_window(it.xyxy, it.window, 0.5)
        image = torch.from_numpy(np.array(crop)).permute(2, 0, 1).float() / 255
        return image, {
            "boxes": torch.from_numpy(local).float().reshape(-1, 4),
            "labels": torch.from_numpy(it.category_ids[idx]).long(),
        }


def bare_loop(
    items: list[TileItem],
    options: dict[str, Any],
    size: int,
    batch: int,
    steps: int,
    channels_last: bool = False,
) -> float:
    """images/s of a plain loop over the same network (AdamW, no augmentation, no hooks);
    ``channels_last``: with the weight layout our trainer uses (the loop itself unchanged)."""
    torch.manual_seed(0)
    model = build_model("small", 2, tile_size=size, options=dict(options)).module.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loader = torch.utils.data.DataLoader(
        BareTiles(items), batch_size=batch, shuffle=True, collate_fn=collate, num_workers=0, drop_last=True
    )
    done, n = 0, 0
    t0 = time.perf_counter()
    while done < steps:
        for images, targets in loader:
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            done += 1
            n += len(images)
            if done >= steps:
                break
    return n / (time.perf_counter() - t0)


def ours(items: list[TileItem], batch: int, epochs: int, workers: int | None, run: Path) -> dict[str, Any]:
    """images/s of train_detector with its defaults (augmentation on), excluding the per-epoch score."""
    job = Quiet()
    cfg = TrainConfig(epochs=epochs, batch_size=batch, num_workers=workers, empty_rate=0.0)
    train_detector(job, items, [1, 2], run, config=cfg, model="small")
    ep = [r for r in job.rows if r["kind"] == "epoch"]
    steps = [r for r in job.rows if r["kind"] == "step"]
    ckpt = load_checkpoint(run / "last.pt")
    return {
        "images_per_s": float(np.mean([r["images_per_s"] for r in ep])),
        "data_wait": float(np.mean([r["data_wait"] for r in ep])),
        "steps": len(steps),
        "workers": cfg.num_workers or 0,
        "options": {k: ckpt["preset_options"][k] for k in ("input_scale", "anchor_sizes", "arch")},
        "tile_size": int(ckpt["tile_size"]),
    }


def throughput(tmp: Path, quick: bool) -> None:
    data = build_set(tmp / "data", n_train=120, n_eval=0, seed=0)
    items = items_of(data["train"])
    print(
        f"\n== throughput: small preset, our defaults, {len(items)} real-object images of 256 px, batch 8 ==",
        flush=True,
    )
    rounds = 1 if quick else 2
    ratios: list[float] = []
    same_layout: list[float] = []
    for r in range(rounds):
        o = ours(items, 8, 2, None, tmp / f"run_tp{r}")
        b = bare_loop(items, o["options"], o["tile_size"], 8, int(o["steps"]))
        same = bare_loop(items, o["options"], o["tile_size"], 8, int(o["steps"]), channels_last=True)
        ratios.append(o["images_per_s"] / b)
        same_layout.append(o["images_per_s"] / same)
        print(
            f"round {r + 1}: magnification {o['options']['input_scale']}, input ~{o['tile_size']} px: "
            f"ours {o['images_per_s']:.1f} img/s ({o['workers']} reader threads, data wait "
            f"{100 * o['data_wait']:.0f}%), bare torchvision loop {b:.1f} img/s (DataLoader, 0 workers) "
            f"-> ratio {ratios[-1]:.2f}; the bare loop with our channels-last weights {same:.1f} img/s "
            f"-> ratio {same_layout[-1]:.2f} (our loop's own cost)",
            flush=True,
        )
    if not quick:
        for workers in (0, 1, 2):
            o = ours(items, 8, 1, workers, tmp / f"run_w{workers}")
            print(
                f"ours with {workers} reader threads: {o['images_per_s']:.1f} img/s, "
                f"model waits for data {100 * o['data_wait']:.0f}% of the time",
                flush=True,
            )
    ratio = float(np.median(ratios))
    print(
        f"RESULT throughput ratio ours / bare: {ratio:.2f} (target >= 0.9: {'PASS' if ratio >= 0.9 else 'MISS'})"
    )
    print(f"RESULT ratio ours / bare loop in the same weight layout: {float(np.median(same_layout)):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one round, no reader-thread sweep")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    os.environ.setdefault("DEEPBLOCK_DOWNLOAD_WEIGHTS", "0")  # the same network, from scratch, both sides
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpdir:
        throughput(Path(tmpdir), args.quick)
    print(f"\ntotal {math.ceil(time.perf_counter() - t0)} s")


if __name__ == "__main__":
    main()

"""Model-assisted labelling loop: how many boxes a person still has to draw or fix.

A generated set (``deepblock_nb.demo.synthetic_scene``: discs, squares and triangles on
textured backgrounds, 256 x 256 images, 3-6 objects each) with its true boxes known. The
project starts with 20 labelled train images and a fixed evaluate split of 20. Then three
rounds of:

1. add 20 new train images without boxes and ``project.prelabel`` them with the newest run;
2. accept each proposal that matches a true box (same category, IoU >= 0.7), reject the
   others, and draw the true boxes no proposal matched (what a person corrects);
3. train a new run on every labelled image and evaluate it.

Printed per round: the true boxes, how many were accepted from proposals, how many had to
be drawn, how many proposals were rejected, and the mAP50 of the run trained after it. The
ratio is the labelling effort against labelling from scratch measured in the same run:
(boxes drawn + proposals rejected) / true boxes, where from scratch every true box is drawn
(ratio 1.0).

Usage::

    python benchmarks/prelabel_loop.py            # about 8-10 minutes on 2 CPU cores
    python benchmarks/prelabel_loop.py --quick    # 8 epochs, one round
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import deepblock_nb as dbn  # noqa: E402
from deepblock_nb.core.boxes import box_iou  # noqa: E402
from deepblock_nb.demo import synthetic_scene  # noqa: E402

ACCEPT_IOU = 0.7
CATEGORIES = ["disc", "square", "triangle"]


def make_images(folder: Path, n: int, seed: int) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """``n`` PNG files with their true boxes ``(N, 4)`` and category ids ``(N,)`` (1-based)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rgb, xyxy, cls = synthetic_scene(rng, 256, 256, n_objects=int(rng.integers(3, 7)))
        path = folder / f"{folder.name}-{i:03d}.png"
        Image.fromarray(rgb).save(path)
        out.append((path, xyxy, cls + 1))
    return out


def label_from_truth(
    project: dbn.Project, image: object, xyxy: np.ndarray, cls: np.ndarray
) -> dict[str, int]:
    """Decide the image's proposals against the truth, as a careful person would."""
    props = project.proposals(image)
    matched_truth = np.zeros(len(xyxy), bool)
    accept: list[int] = []
    reject: list[int] = []
    iou = (
        box_iou(props.xyxy, xyxy) if len(props.xyxy) and len(xyxy) else np.zeros((len(props.xyxy), len(xyxy)))
    )
    for k in range(len(props.xyxy)):  # best score first
        ok = (iou[k] >= ACCEPT_IOU) & (cls == props.class_id[k]) & ~matched_truth
        if ok.any():
            j = int(np.argmax(np.where(ok, iou[k], -1)))
            matched_truth[j] = True
            accept.append(int(props.ids[k]))
        else:
            reject.append(int(props.ids[k]))
    if accept:
        project.accept_proposals(image, accept)
    if reject:
        project.reject_proposals(image, reject)
    for box, c in zip(xyxy[~matched_truth], cls[~matched_truth]):
        project.add_box(image, int(c), box)
    return {
        "truth": len(xyxy),
        "accepted": len(accept),
        "drawn": int((~matched_truth).sum()),
        "rejected": len(reject),
    }


def train_and_score(project: dbn.Project, epochs: int | None) -> tuple[int, float, float]:
    start = time.perf_counter()
    job = project.train(epochs=epochs, device="cpu").wait(raise_on_error=True)
    run = int(job.result)
    epochs_run = int(project.runs().set_index("id").loc[run, "epochs_done"])
    print(f"  run {run}: {epochs_run} epochs on {len(project.images('train'))} images", flush=True)
    report = project.evaluate(run=run, device="cpu").wait(raise_on_error=True).result
    return run, float(report.map50), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs of each run (default: the trainer decides)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="6 epochs, one round")
    args = parser.parse_args()
    epochs, rounds = (8, 1) if args.quick else (args.epochs, args.rounds)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        project = dbn.Project.create(work / "proj", categories=CATEGORIES)
        for path, xyxy, cls in make_images(work / "start", 20, seed=1):
            rec = project.add_image(path, split="train")
            project.add_boxes(rec, [int(c) for c in cls], xyxy)
        for path, xyxy, cls in make_images(work / "eval", 20, seed=2):
            rec = project.add_image(path, split="evaluate")
            project.add_boxes(rec, [int(c) for c in cls], xyxy)
        said = "the trainer's choice of" if epochs is None else str(epochs)
        print(f"{said} epochs per run, proposals accepted at IoU >= {ACCEPT_IOU} with the truth")
        run, map50, seconds = train_and_score(project, epochs)
        print(f"round 0: 20 labelled images by hand; run {run}: mAP50 {map50:.3f} ({seconds:.0f} s)")
        total = {"truth": 0, "accepted": 0, "drawn": 0, "rejected": 0}
        for r in range(1, rounds + 1):
            new = make_images(work / f"round{r}", 20, seed=10 + r)
            recs = [project.add_image(path, split="train") for path, _, _ in new]
            project.prelabel(recs, run=run, device="cpu").wait(raise_on_error=True)
            counts = {"truth": 0, "accepted": 0, "drawn": 0, "rejected": 0}
            for rec, (_, xyxy, cls) in zip(recs, new):
                for k, v in label_from_truth(project, rec, xyxy, cls).items():
                    counts[k] += v
            for k in total:
                total[k] += counts[k]
            run, map50, seconds = train_and_score(project, epochs)
            effort = (counts["drawn"] + counts["rejected"]) / max(counts["truth"], 1)
            print(
                f"round {r}: {counts['truth']} true boxes, {counts['accepted']} accepted from proposals, "
                f"{counts['drawn']} drawn, {counts['rejected']} proposals rejected "
                f"(corrections {counts['drawn'] + counts['rejected']}, effort {effort:.2f}); "
                f"run {run}: mAP50 {map50:.3f} ({seconds:.0f} s)"
            )
        stats = project.annotation_statistics("train")
        print(stats.to_string())
        ratio = (total["drawn"] + total["rejected"]) / max(total["truth"], 1)
        print(
            f"ratio (boxes drawn + proposals rejected) / (boxes drawn from scratch): {ratio:.2f} "
            f"over {total['truth']} boxes in {rounds} rounds"
        )
        project.close()


if __name__ == "__main__":
    main()

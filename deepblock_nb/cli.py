"""Headless entry point: ``deepblock-nb COMMAND PROJECT_DIR [options]``.

Commands: ``info``, ``demo``, ``train``, ``evaluate``, ``predict``, ``export``,
``import``. Each opens the project, calls the same Project method a widget would,
waits for its job and prints a short report on stdout (``--json``: one JSON object
and nothing else). Progress goes to stderr: tqdm bars on a terminal, plain lines
(start, at most one every few seconds, end) otherwise; ``--quiet`` turns it off.
No command creates a project except ``demo`` and ``import --create``.

Exit status:
  0    success
  1    a deepblock_nb error: bad input, no project at PROJECT_DIR, a failed job;
       printed as one line ``deepblock-nb: error: <message>``, no traceback
  2    bad command-line arguments (argparse usage error)
  3    an unexpected internal error, one line (``DEEPBLOCK_DEBUG=1`` shows the traceback)
  130  interrupted (Ctrl-C): a running job is stopped and waited for, keeping what it
       finished (a stopped training run keeps its resumable ``last.pt``)
The project is closed in every case.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deepblock_nb.errors import DeepBlockError, JobError, ProjectNotFoundError

__all__ = ["main"]

PROG = "deepblock-nb"
SPLITS = ("train", "evaluate", "predict")
POLL_S = 0.2  # how often a job's progress is read (5 per second)
PLAIN_EVERY_S = 3.0  # at most one plain progress line this often
EPILOG = """\
exit status:
  0    success
  1    a deepblock_nb error (bad input, no project, a failed job), one line on stderr
  2    bad command-line arguments
  3    an unexpected internal error (DEEPBLOCK_DEBUG=1 shows the traceback)
  130  interrupted (Ctrl-C): the job is stopped, what it finished is kept
"""

Result = tuple[dict[str, Any], list[str]]  # (the --json object, the lines printed without --json)


class _Usage(Exception):
    """A combination of options argparse cannot check: reported as a usage error (exit 2)."""


# -- progress ------------------------------------------------------------------------
class _Progress:
    """Shows a job's progress on stderr: a tqdm bar on a terminal, plain lines otherwise."""

    def __init__(self, kind: str, enabled: bool) -> None:
        self.kind = kind
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._last_line = ""
        self._last_time = -math.inf

    def update(self, fraction: float, message: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            self._tqdm_update(fraction, message)
            return
        now = time.monotonic()
        line = f"{self.kind}: {100 * fraction:3.0f}%  {message}"
        if force or (line != self._last_line and now - self._last_time >= PLAIN_EVERY_S):
            print(line, file=sys.stderr, flush=True)
            self._last_line, self._last_time = line, now

    def _tqdm_update(self, fraction: float, message: str) -> None:
        if self._bar is None:
            from tqdm import tqdm

            try:
                known = os.get_terminal_size(sys.stderr.fileno()).columns > 0
            except OSError:
                known = False
            # a terminal that reports no size (a bare pty) would get no bar at all
            size: dict[str, Any] = {"dynamic_ncols": True} if known else {"ncols": 100, "nrows": 24}
            self._bar = tqdm(total=1000, desc=self.kind, file=sys.stderr, leave=True, **size)
            self._bar.bar_format = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}"
        self._bar.n = round(1000 * fraction)
        self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def close(self, fraction: float, message: str | None) -> None:
        """The end line (plain; not twice; None: none) or the bar's last state (tty)."""
        if message is not None and message not in self._last_line:
            self.update(fraction, message, force=True)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def note(self, line: str) -> None:
        """A line of its own (above the bar on a terminal), shown even with progress off."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def _wait(job: Any, args: argparse.Namespace) -> Any:
    """Follow ``job`` until it ends; return its result.

    Ctrl-C stops the job, waits for it to end (keeping what it finished) and re-raises
    KeyboardInterrupt; a second Ctrl-C quits without waiting. A failed job raises its
    error (a non-deepblock error wrapped in JobError, so it exits 1).
    """
    progress = _Progress(job.kind, not args.quiet)
    progress.update(job.progress, job.message, force=True)
    try:
        while not job.done:
            progress.update(job.progress, job.message)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        progress.note(f"interrupted: stopping the {job.kind} job (what it finished is kept) ...")
        job.stop()
        try:
            job.wait()
        except KeyboardInterrupt:
            progress.note("interrupted again: quitting without waiting")
            os._exit(130)
        progress.close(job.progress, job.message)
        raise
    job.wait()
    status = job.status.value
    ending = job.message if job.message.startswith(status) else f"{status}: {job.message}"
    progress.close(job.progress, None if job.error is not None else ending)  # an error has its own line
    if job.error is not None:
        if isinstance(job.error, DeepBlockError):
            raise job.error
        raise JobError(f"the {job.kind} job failed: {_one_line(job.error)}") from job.error
    return job.result


@contextmanager
def _steps(kind: str, total: int, args: argparse.Namespace) -> Iterator[Callable[[str], None]]:
    """Progress over ``total`` synchronous steps (an import): ``done(message)`` after each."""
    progress = _Progress(kind, not args.quiet)
    count = [0]

    def done(message: str) -> None:
        count[0] += 1
        progress.update(count[0] / max(total, 1), message, force=True)

    progress.update(0.0, "starting", force=True)
    try:
        yield done
    finally:  # an error or Ctrl-C says so in its own line
        progress.close(count[0] / max(total, 1), None)


# -- the commands ------------------------------------------------------------------------
def _cmd_info(project: Any, args: argparse.Namespace) -> Result:
    splits = {
        split: {"images": len(project.images(split)), "boxes": project.box_counts(split)} for split in SPLITS
    }
    runs = _runs(project)
    info = {
        "path": str(project.path),
        "categories": [{"id": c.id, "name": c.name, "color": c.color} for c in project.categories],
        "splits": splits,
        "runs": runs,
        "threshold": project.threshold,
    }
    lines = [f"project {project.path}"]
    lines += [f"categories: {', '.join(c.name for c in project.categories) or 'none'}"]
    for split, counts in splits.items():
        boxes = ", ".join(f"{name} {n}" for name, n in counts["boxes"].items()) or "no boxes"
        lines.append(f"  {split:9s} {counts['images']:5d} images  {boxes}")
    lines.append(f"runs: {len(runs)}" + ("" if runs else " (train one with: deepblock-nb train)"))
    for run in runs:
        lines.append(
            f"  run {run['id']}  {run['model']}  {run['status']}  epochs {run['epochs']}  best {_fmt(run['best_score'])}"
        )
    lines.append(f"threshold: {project.threshold:.2f}")
    return info, lines


def _runs(project: Any) -> list[dict[str, Any]]:
    frame = project.runs()
    return [
        {
            "id": int(row["id"]),
            "model": str(row["model"]),
            "status": str(row["status"]),
            "epochs": _plain(row.get("epochs_done")),
            "best_score": _plain(row.get("best_score")),
        }
        for row in frame.to_dict("records")
    ]


def _torchrun_rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    try:
        return int(os.environ.get("RANK", "0")) if "WORLD_SIZE" in os.environ else 0
    except ValueError:
        return 0


def _cmd_train(project: Any, args: argparse.Namespace) -> Result:
    """Train; under torchrun every process trains one rank of the same run, rank 0
    alone writes it and reports (the others print nothing)."""
    options: dict[str, Any] = {}
    if args.options is not None:
        try:
            options = json.loads(args.options)
        except ValueError as exc:
            raise _Usage(f"train: --options must be a JSON object of training settings ({exc})") from None
        if not isinstance(options, dict):
            raise _Usage("train: --options must be a JSON object such as '{\"patience\": 3}'")
    options.update(
        (k, v)
        for k, v in (("tile_size", args.tile_size), ("seed", args.seed), ("weights", args.weights))
        if v is not None
    )
    if args.no_download:
        options["download"] = False
    if args.devices is not None:
        options["devices"] = args.devices
    if args.run_id is not None:
        if args.resume is not None:
            raise _Usage("train: --run-id (a new run made beforehand) and --resume exclude each other")
        options["_run"] = args.run_id
    if _torchrun_rank() > 0:
        args.quiet = True
    for name in ("batch_size", "lr"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    job = project.train(
        epochs=args.epochs,
        model=args.model,
        device=args.device,
        resume=False if args.resume is None else args.resume,
        **options,
    )
    try:
        run_id = _wait(job, args)
    except KeyboardInterrupt:
        run = _newest_run(project)
        if run is not None:
            print(
                f"{PROG}: run {run['id']} {run['status']}; continue it with --resume {run['id']}",
                file=sys.stderr,
            )
        raise
    run = next((r for r in _runs(project) if r["id"] == run_id), None) or _newest_run(project) or {}
    lines = [
        f"run {run.get('id')}: {run.get('status')}, {run.get('epochs')} epochs, best score {_fmt(run.get('best_score'))}"
    ]
    return {"run": run.get("id"), **{k: v for k, v in run.items() if k != "id"}}, lines


def _newest_run(project: Any) -> dict[str, Any] | None:
    runs = _runs(project)
    return max(runs, key=lambda r: r["id"]) if runs else None


def _cmd_evaluate(project: Any, args: argparse.Namespace) -> Result:
    if args.threshold is not None:
        project.threshold = args.threshold  # the slider: report.at_threshold is measured there
    job = project.evaluate(
        run=args.run, accurate=args.accurate, batch_size=args.batch_size, device=args.device
    )
    report = _wait(job, args)
    per_class = [
        {"class_id": int(cid), **{k: _plain(v) for k, v in row.items()}}
        for cid, row in report.per_class.iterrows()
    ]
    at = report.at_threshold
    result = {
        "mAP50": _plain(report.map50),
        "mAP": _plain(report.map),
        "precision": _plain(report.precision),
        "recall": _plain(report.recall),
        "f1": _plain(report.f1),
        "threshold": _plain(report.threshold),
        "best_threshold": _plain(report.best_threshold),
        "at_threshold": None if at is None else {k: _plain(v) for k, v in at.to_dict().items()},
        "images": int(report.n_images),
        "per_class": per_class,
    }
    lines = [
        f"mAP50 {_fmt(report.map50)}  mAP {_fmt(report.map)}  ({report.n_images} images)",
        f"precision {_fmt(report.precision)}  recall {_fmt(report.recall)}  F1 {_fmt(report.f1)}  {report.threshold_label}",
        report.to_frame().to_string(),
    ]
    return result, lines


def _cmd_predict(project: Any, args: argparse.Namespace) -> Result:
    images = None if not args.images else [int(i) if i.isdigit() else i for i in args.images]
    job = project.predict(
        images=images, accurate=args.accurate, run=args.run, batch_size=args.batch_size, device=args.device
    )
    ids = _wait(job, args) or []
    names = {c.id: c.name for c in project.categories}
    threshold = project.threshold
    rows = []
    for image_id in ids:
        rec = project.image(int(image_id))
        det = project.predictions(rec, threshold=threshold)
        per_category = Counter(names.get(int(cid), str(cid)) for cid in det.class_id.tolist())
        rows.append({"id": rec.id, "name": rec.name, "boxes": len(det), "per_category": dict(per_category)})
    lines = [f"{len(rows)} images predicted; boxes scoring >= {threshold:.2f}:"]
    lines += [
        f"  {r['name']}: {r['boxes']}  {', '.join(f'{k} {n}' for k, n in r['per_category'].items())}".rstrip()
        for r in rows
    ]
    return {"threshold": threshold, "images": rows}, lines


def _cmd_export(project: Any, args: argparse.Namespace) -> Result:
    if args.what == "annotations":
        if args.threshold is not None:
            raise _Usage("export: --threshold applies to --what predictions only")
        path = project.export_annotations(args.output, format=args.format, split=args.split)
    else:
        split = "predict" if args.split is None else args.split
        path = project.export_predictions(
            args.output, format=args.format, split=split, threshold=args.threshold
        )
    path = Path(path if path is not None else args.output)
    return {"path": str(path), "what": args.what, "format": args.format}, [f"wrote {path}"]


def _cmd_import(project: Any, args: argparse.Namespace) -> Result:
    files = _expand(args.images)
    total = int(bool(files)) + int(args.annotations is not None)
    result: dict[str, Any] = {"images_added": 0}
    lines = []
    with _steps("import", total, args) as done:
        if files:
            added = project.add_images(files, split=args.split, copy=args.copy)
            result["images_added"] = len(added)
            lines.append(f"added {len(added)} images to the {args.split} split")
            done(lines[-1])
        if args.annotations is not None:
            report = project.import_annotations(
                args.annotations, format=args.format, images_dir=args.images_dir, split=args.split,
                classes=args.classes, copy=args.copy,
            )  # fmt: skip
            result["images_added"] += report.images_added
            result.update(
                annotations=str(report.path), format=report.format, images_matched=report.images_matched,
                boxes_added=report.boxes_added, boxes_clipped=report.boxes_clipped,
                categories_added=list(report.categories_added), warnings=list(report.warnings),
            )  # fmt: skip
            lines += str(report).splitlines()
            done(lines[0 if not files else 1])
    return result, lines


def _expand(patterns: list[str]) -> list[str]:
    """Paths as given, globs expanded (sorted); a glob that matches nothing is an error."""
    from deepblock_nb.errors import ArgumentError

    files: list[str] = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            found = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
            if not found:
                raise ArgumentError(f"no file matches {pattern!r}")
            files += found
        else:
            files.append(expanded)
    return files


def _cmd_demo(args: argparse.Namespace) -> Result:
    from deepblock_nb.demo import create_demo_project

    with _steps("demo", 1, args) as done:
        project = create_demo_project(args.project)
        done(f"demo project at {project.path}")
    try:
        info, lines = _cmd_info(project, args)
    finally:
        project.close()
    return info, [f"demo project ready: {project.path}", *lines[1:]]


COMMANDS: dict[str, Callable[[Any, argparse.Namespace], Result]] = {
    "info": _cmd_info,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "export": _cmd_export,
    "import": _cmd_import,
}


# -- helpers -----------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars to Python, NaN to None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _show_warning(
    message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None
) -> None:
    """Warnings as one line each (a library's UserWarning is advice, not a stack)."""
    print(
        f"{PROG}: warning: {_one_line(message if isinstance(message, BaseException) else Exception(message))}",
        file=sys.stderr,
    )


# -- the parser ------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Headless deepblock_nb: train, evaluate, predict, import and export from a shell.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # accepted before or after the command; SUPPRESS keeps a subcommand from resetting it
    common = argparse.ArgumentParser(add_help=False)
    for parser, default in ((ap, False), (common, argparse.SUPPRESS)):
        parser.add_argument(
            "--json",
            action="store_true",
            default=default,
            help="print the result as one JSON object on stdout",
        )
        parser.add_argument(
            "-q", "--quiet", action="store_true", default=default, help="no progress on stderr"
        )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common], epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        p.add_argument("project", metavar="PROJECT_DIR", help="the project folder")
        return p

    def devices(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--device", default="auto", help="auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:1, ..."
        )
        p.add_argument("--batch-size", type=int, default=None, help="default: the model preset's")

    command("info", "summarise a project: images and boxes per split and category, runs")
    command("demo", "create the demo project (shapes on textures) at PROJECT_DIR, or open it")

    p = command("train", "train a detector on the train split")
    p.add_argument("--epochs", type=int, default=None, help="default: the trainer decides")
    p.add_argument(
        "--model", default="auto", help="auto, or a preset: small, ssdlite, fcos_mobilenet_v2, ..."
    )
    devices(p)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.add_argument(
        "--tile-size", type=int, default=None, help="model input side in pixels (default: from box sizes)"
    )
    p.add_argument("--resume", nargs="?", type=int, const=True, default=None, metavar="RUN",
                   help="continue the newest run (or run RUN) from its last.pt")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="makes sampling and augmentation repeatable")
    p.add_argument("--weights", default=None, metavar="FILE", help="a local weights file to start from")
    p.add_argument("--no-download", action="store_true", help="never fetch pretrained weights")
    p.add_argument("--devices", type=int, default=None, metavar="N",
                   help="train on N processes (torchrun, DistributedDataParallel); or run this command "
                   "under torchrun yourself")  # fmt: skip
    p.add_argument("--options", default=None, metavar="JSON",
                   help='more training settings as a JSON object, e.g. \'{"patience": 3, "holdout": 0.2}\'')  # fmt: skip
    # not --run: under torchrun that would be an abbreviation of torchrun's own --run-path
    p.add_argument("--run-id", type=int, default=None, metavar="RUN",
                   help="train into run RUN, a queued run made beforehand (as project.train(devices=N) does)")  # fmt: skip

    p = command("evaluate", "score a trained run on the evaluate split")
    p.add_argument("--run", type=int, default=None, help="default: the newest run with a model")
    p.add_argument("--threshold", type=float, default=None,
                   help="set the project's threshold (kept, as the slider) and report the scores there too")  # fmt: skip
    p.add_argument("--accurate", action="store_true", help='"More accurate" prediction')
    devices(p)

    p = command("predict", "predict the predict split (or --images)")
    p.add_argument("--images", nargs="+", default=None, metavar="IMAGE", help="image names or ids")
    p.add_argument("--run", type=int, default=None, help="default: the newest run with a model")
    p.add_argument("--accurate", action="store_true", help='"More accurate" mode (slower)')
    devices(p)

    p = command("export", "export annotations or predictions")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="PATH",
        help="file (COCO, CSV, GeoJSON, GPKG) or folder (YOLO, VOC)",
    )
    p.add_argument("--what", choices=("annotations", "predictions"), default="annotations")
    p.add_argument(
        "--format",
        default="coco",
        help="annotations: coco, yolo, voc, geojson, gpkg; predictions: coco, csv, geojson, gpkg",
    )
    p.add_argument(
        "--split", choices=SPLITS, default=None, help="annotations: default all; predictions: default predict"
    )
    p.add_argument(
        "--threshold", type=float, default=None, help="predictions: lowest score (default: the project's)"
    )

    p = command("import", "add images and/or import an annotation file")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or globs ('scans/*.tif')")
    p.add_argument("--split", choices=SPLITS, default="train")
    copy = p.add_mutually_exclusive_group()
    copy.add_argument(
        "--copy", dest="copy", action="store_true", default=True, help="copy files into the project (default)"
    )
    copy.add_argument(
        "--reference", dest="copy", action="store_false", help="keep references to the original files"
    )
    p.add_argument(
        "--annotations",
        default=None,
        metavar="FILE",
        help="a COCO JSON, a folder of YOLO labels, VOC XML file(s)",
    )
    p.add_argument("--format", default="coco", help="of --annotations: coco, yolo or voc")
    p.add_argument(
        "--images-dir",
        default=None,
        metavar="DIR",
        help="where the annotations' images lie (default: beside FILE)",
    )
    p.add_argument("--classes", default=None, metavar="FILE", help="YOLO: classes.txt or data.yaml")
    p.add_argument("--create", action="store_true", help="create the project when PROJECT_DIR holds none")
    p.add_argument(
        "--categories", default=None, metavar="A,B", help="with --create: the new project's categories"
    )
    return ap


# -- main --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command == "import" and not args.images and args.annotations is None:
        ap.error("import: give image files or globs, --annotations FILE, or both")
    if args.command == "import" and args.categories is not None and not args.create:
        ap.error("import: --categories goes with --create")
    warnings.showwarning = _show_warning
    try:
        result, lines = _run_command(args)
    except _Usage as exc:
        ap.error(str(exc))
    except DeepBlockError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("DEEPBLOCK_DEBUG"):
            traceback.print_exc()
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {_one_line(exc)} (DEEPBLOCK_DEBUG=1 shows the traceback)",
              file=sys.stderr)  # fmt: skip
        return 3
    if args.command == "train" and _torchrun_rank() > 0:
        return 0  # rank 0 reports the run
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print("\n".join(lines))
    return 0


def _run_command(args: argparse.Namespace) -> Result:
    from deepblock_nb.project import Project

    if args.command == "demo":
        return _cmd_demo(args)
    if args.command == "import" and args.create and not (Path(args.project) / "project.db").is_file():
        categories = [c.strip() for c in (args.categories or "").split(",") if c.strip()]
        project = Project.create(args.project, categories=categories)
    else:
        try:
            project = Project.open(args.project)
        except ProjectNotFoundError as exc:
            hint = f"{exc}; from a shell: deepblock-nb import {args.project} IMAGES --create, or deepblock-nb demo"
            raise ProjectNotFoundError(hint) from None
    try:
        return COMMANDS[args.command](project, args)
    finally:
        project.close()


if __name__ == "__main__":
    sys.exit(main())

"""Headless entry point: ``deepblock-nb {info,demo,train,evaluate,predict,export} ...``.

Each command opens a project, runs the same Project method a widget would, waits
for the job and prints a short report. Exit status 1 on a deepblock_nb error
(one line, no traceback), 2 on bad arguments, 3 on an unexpected error (one
line; ``DEEPBLOCK_DEBUG=1`` shows its traceback), 130 when interrupted. The
project is closed in every case.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from deepblock_nb.errors import DeepBlockError

__all__ = ["main"]


def _progress(job: Any) -> None:
    """Print the job's message at most once a second until it ends."""
    last = ""
    while not job.done:
        if job.message != last:
            last = job.message
            print(f"[{job.kind}] {100 * job.progress:5.1f}%  {last}", flush=True)
        time.sleep(1.0)
    job.wait()
    print(f"[{job.kind}] {job.status.value}: {job.message}", flush=True)


def _run(job: Any) -> Any:
    try:
        _progress(job)
    except KeyboardInterrupt:
        print("stopping (the finished part is kept) ...", flush=True)
        job.stop().wait()
    if job.error is not None:
        raise job.error
    return job.result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="deepblock-nb", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="summarise a project")
    p.add_argument("project")
    p = sub.add_parser("demo", help="create the demo project")
    p.add_argument("project", nargs="?", default="demo_project")
    p = sub.add_parser("train", help="train a detector on the train split")
    p.add_argument("project")
    p.add_argument("--epochs", type=int, default=None, help="default: the trainer decides")
    p.add_argument("--model", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--resume", action="store_true")
    p = sub.add_parser("evaluate", help="score a trained run on the evaluate split")
    p.add_argument("project")
    p.add_argument("--run", type=int, default=None)
    p = sub.add_parser("predict", help="predict on the predict split")
    p.add_argument("project")
    p.add_argument("--run", type=int, default=None)
    p.add_argument("--accurate", action="store_true", help='"More accurate" mode')
    p = sub.add_parser("export", help="export annotations or predictions")
    p.add_argument("project")
    p.add_argument("output")
    p.add_argument("--what", choices=("annotations", "predictions"), default="annotations")
    p.add_argument("--format", default="coco")
    p.add_argument("--split", default=None)
    args = ap.parse_args(argv)

    try:
        return _command(args)
    except DeepBlockError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("DEEPBLOCK_DEBUG"):
            traceback.print_exc()
        print(
            f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (DEEPBLOCK_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 3


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _command(args: argparse.Namespace) -> int:
    from deepblock_nb.project import Project

    if args.command == "demo":
        from deepblock_nb.demo import create_demo_project

        print(create_demo_project(args.project))
        return 0
    project = Project.open(args.project)
    try:
        if args.command == "info":
            print(project)
            for split in ("train", "evaluate", "predict"):
                print(f"  {split:9s} {len(project.images(split))} images")
            for name, n in project.box_counts().items():
                print(f"  {name:20s} {n} boxes")
        elif args.command == "train":
            options = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
            run = _run(
                project.train(
                    epochs=args.epochs, model=args.model, device=args.device, resume=args.resume, **options
                )
            )
            print(f"run {run}")
        elif args.command == "evaluate":
            report = _run(project.evaluate(run=args.run))
            print(report.to_frame().to_string() if report is not None else "no report")
        elif args.command == "predict":
            _run(project.predict(accurate=args.accurate, run=args.run))
            print(project.statistics().to_string())
        elif args.command == "export":
            out = Path(args.output)
            if args.what == "annotations":
                project.export_annotations(out, format=args.format, split=args.split)
            else:
                project.export_predictions(out, format=args.format)
            print(f"wrote {out}")
    finally:
        project.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

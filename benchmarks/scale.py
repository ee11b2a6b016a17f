"""Beyond one process: prediction on a Dask LocalCluster and training with DDP, 1 against 2.

Runs both measurements of this machine, one after the other:

- ``_scale_dask.dask_throughput``: prediction images/s on a LocalCluster of 1 and of 2
  worker processes (1 thread each), their ratio, against a local predict, and the
  bytes moved per image (task inputs sent, results returned);
- ``_scale_ddp.ddp_throughput``: training images/s under torchrun with 1 process
  (2 torch threads) and with 2 processes (Gloo, 1 thread each), and their ratio.

On a machine with 2 cores, 2 workers or 2 processes share those cores: the ratios
then say what the distribution costs, not what a second machine or GPU would bring.

Usage::

    python benchmarks/scale.py            # about 6-8 minutes on 2 CPU cores
    python benchmarks/scale.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale_dask import dask_throughput
from _scale_ddp import ddp_throughput

if __name__ == "__main__":  # Dask's worker processes import this file again
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs")
    args = parser.parse_args()
    print("== prediction on a Dask LocalCluster")
    saved = dict(os.environ)
    dask_throughput(6 if args.quick else 16, args.quick)
    # Dask's nanny leaves OMP_NUM_THREADS=1 and MALLOC_TRIM_THRESHOLD_ in this process's
    # environment; torchrun's processes below must not inherit them
    os.environ.clear()
    os.environ.update(saved)
    print("== training with DistributedDataParallel (torchrun, Gloo)")
    ddp_throughput(args.quick)

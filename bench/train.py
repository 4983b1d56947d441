"""Train entry for cluster launchers: `torchrun ... -m bench.train ARGS` is `spikerl-bench run ARGS`.

Under torchrun, mpirun/mpiexec or srun every rank runs this same command; rank, world size and
rendezvous come from the launcher's environment (spikerl.distributed.detect_launch).
"""
from __future__ import annotations

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))

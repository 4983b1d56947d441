"""`python -m bench.cli ARGS` is `spikerl-bench ARGS` (the local launcher starts ranks this way)."""
import sys

from bench.cli.main import main

sys.exit(main())

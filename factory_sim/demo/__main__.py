"""`python -m factory_sim.demo` (what `make demo` runs)."""

import sys

from factory_sim.demo.run import cli

sys.exit(cli(sys.argv[1:]))

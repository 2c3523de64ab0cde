"""``python -m paintgym SUBCOMMAND ...`` is the ``paintgym`` command."""

import sys

from paintgym.cli import cli

sys.exit(cli())

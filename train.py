"""``python train.py [options]`` is ``paintgym train [options]`` (the command lives in ``paintgym.cli``)."""

import sys

from paintgym.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m colqwen3 ...`: the same command line as the `colqwen3` console script."""

import sys

from colqwen3.cli import main

sys.exit(main())

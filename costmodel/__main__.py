"""`python -m costmodel`: the command line, as the `costmodel` script runs it."""

import sys

from costmodel.cli import main

sys.exit(main())

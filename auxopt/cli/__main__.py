"""``python -m auxopt.cli``: the ``auxopt`` command (worker processes are started this way)."""

import sys

from auxopt.cli import main

sys.exit(main())

"""``python -m lab``: the same as the ``rlaif`` command."""

import sys

from lab.cli import main

sys.exit(main())

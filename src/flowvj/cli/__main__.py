"""`python -m flowvj.cli` (torchrun starts train this way)."""

import sys

from . import main

sys.exit(main())

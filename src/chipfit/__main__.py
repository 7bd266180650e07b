"""``python -m chipfit``."""

import sys

from chipfit.cli import main

sys.exit(main())

"""``python -m flows.cli`` is ``vgnn``."""

import sys

from . import main

sys.exit(main())

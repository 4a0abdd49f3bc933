"""``python -m trio_streams``: the same as the ``trio-streams`` command."""

import sys

from .cli._main import main

sys.exit(main())

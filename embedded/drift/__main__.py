"""``python -m embedded.drift``: the drift monitor's command line."""

import sys

from embedded.drift.cli import main

sys.exit(main())

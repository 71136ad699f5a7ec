"""``python -m civit.testing``."""

import sys

from civit.testing.runner import main

sys.exit(main())

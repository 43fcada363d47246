"""``python -m tools.ui [--host H] [--port P]``: the dashboard as a process (``falcon up`` and the
deploy manifests start it this way; ``falcon ui`` is the same)."""

import sys

from tools.ui.server import main

sys.exit(main())

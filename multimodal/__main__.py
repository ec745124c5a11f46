"""``python -m multimodal`` runs the ``multimodal`` command."""

import sys

from .cli import main

sys.exit(main())

"""``python -m ice_upload_sync``: the operator's command line (see ``cli.py``)."""
import sys

from .cli import main

sys.exit(main())

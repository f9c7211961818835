"""``python -m automl_lib``: see :mod:`automl_lib.cli`."""

import sys

from .cli import main

sys.exit(main())

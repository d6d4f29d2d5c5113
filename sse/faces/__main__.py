"""`python -m sse.faces ...` runs the sse-preprocess command line."""

import sys

from .cli import main

sys.exit(main())

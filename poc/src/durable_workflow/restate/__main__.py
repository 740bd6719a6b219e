"""``python -m durable_workflow.restate serve MODULE:ENGINE`` (see `._serve`)."""

import sys

from ._serve import main

if __name__ == "__main__":
    sys.exit(main())

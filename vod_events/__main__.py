"""`python -m vod_events COMMAND [ARGS...]`: the same as the `vod-events` command."""

import sys

from vod_events.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m vod_events.consume --config FILE`: kept because systemd units and container
images in the field start the daemon this way. The command lives in `vod_events.cli.consume`."""

import sys

from vod_events.cli.consume import main

if __name__ == "__main__":
    sys.exit(main())

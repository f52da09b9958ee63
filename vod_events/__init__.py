"""vod-events: receive ApsaraVideo VOD event notifications reliably."""

__version__ = "0.1.0"

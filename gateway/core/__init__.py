"""The gateway's decisions, free of I/O: quality, change detection, topics, payloads."""

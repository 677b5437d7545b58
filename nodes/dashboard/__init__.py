"""The dashboard pattern: a read-only observer of the other patterns' nodes (their /status), as a web page."""

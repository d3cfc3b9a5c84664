"""Operating a gateway: logs and their redaction, metrics, the data directory's lock."""

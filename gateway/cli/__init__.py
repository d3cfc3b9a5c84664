"""The command line: a thin shell over the library (``gateway --help``)."""

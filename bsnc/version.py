"""The version of bsnc, written into generated code and run records."""

__version__ = "0.1.0"

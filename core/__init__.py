"""The headless engine of autoresearch: no UI library is imported here."""

__version__ = "0.1.0"

"""shield: a self-hosted image origin shield."""

__version__ = "1.0.0"

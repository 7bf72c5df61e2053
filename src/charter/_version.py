"""charter's version: a leaf module that every layer may import (the package face imports it too)."""

__version__ = "0.2.0"

"""The installed civit version (one place; pyproject.toml reads it too)."""

VERSION = "0.1.0"

"""The installed civit version (one place; pyproject.toml reads it too)."""

VERSION = "0.1.0"

#: Where civit lives; pyproject.toml [project.urls] and the User-Agent name it.
PROJECT_URL = "https://github.com/civit-tools/civit"

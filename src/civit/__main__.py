"""``python -m civit`` runs the command line."""

from civit.cli import main

main()

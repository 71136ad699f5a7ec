"""The pieces of ``scripts/bench``, one room each (see ``scripts/bench.py``)."""

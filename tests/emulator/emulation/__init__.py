"""The emulator's parts, one module per concern (tests/emulator/emulator.py runs them)."""

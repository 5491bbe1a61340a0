"""The HTTP surfaces: each API translates its own shapes into the core's calls and back."""

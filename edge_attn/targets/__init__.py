"""Real target hardware toolchains: what a vendor's own compiler or runtime makes of a model (not hand rules)."""

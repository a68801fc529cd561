"""Authority adapters (tax, FX, commerce, origin certificates), discovered through `ackhub.adapters`."""

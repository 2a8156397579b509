"""Certificate-authority toolkit compatible with albatross-client (generate, sign, delegate)."""

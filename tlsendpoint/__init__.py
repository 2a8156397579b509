"""albatross-gateway: a safer albatross TLS endpoint, its wire protocol core and tools."""

"""One module per table; each function takes the (already tenant-scoped) session."""

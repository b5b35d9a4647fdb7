"""Where many holes become one dataset: `uos parse` builds it, later stages read it."""

"""uos: parse, label, train and serve hole-depth models from Setitec drilling-unit signals."""

__version__ = "0.1.0"

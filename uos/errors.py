"""The error types a user sees. The CLI turns each into one `Error: ...` line on stderr."""


class UosError(Exception):
    """A problem the user can act on: bad input, bad configuration, missing artefact."""


class InputError(UosError):
    """An input file or message that cannot be read as a hole."""

    def __init__(self, message: str, source: str | None = None):
        self.source = source
        self.reason = message
        super().__init__(f"{source}: {message}" if source else message)


class ConfigError(UosError):
    """Invalid params.toml content or command-line options."""

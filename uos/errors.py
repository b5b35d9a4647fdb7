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


def gist(exc: BaseException, sentence: bool = False, limit: int = 200) -> str:
    """An exception as the end of a one-line message: its first line (or only its first sentence:
    torch's and MLflow's run on for several), shortened; its type's name when it says nothing."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    first = text.splitlines()[0]
    return (first.split(". ")[0] if sentence else first)[:limit]

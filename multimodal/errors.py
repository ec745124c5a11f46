"""The one exception type that public entry points raise for bad input."""


class InputError(ValueError):
    """Bad input to a public entry point.

    The message names the input, what was expected and what was found. The CLI prints it
    without a traceback and exits with status 2; the app shows it as a ``gr.Error``.
    """


def expect(condition: bool, name: str, expected: str, found) -> None:
    """Raise ``InputError("{name}: expected {expected}, found {found}")`` unless ``condition``."""
    if not condition:
        raise InputError(f"{name}: expected {expected}, found {found}")

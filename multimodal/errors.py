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


MAX_SEED = 2 ** 64 - 1  # the largest seed torch.Generator.manual_seed takes


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int, or ``InputError`` unless it is an integer from 0 to ``MAX_SEED`` (a float
    with an integral value, as number widgets send, is accepted)."""
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{name}: expected an integer from 0 to 2**64 - 1, found {seed!r}")
    return seed

"""The shell every command runs in: ``--debug``, and bad input as one line ``error: ...`` with exit code 2.

``run_command(body)`` strips ``--debug`` from the arguments, runs ``body(argv)`` and turns a
``MusicrnnError`` into one line on stderr and its exit code; any other exception is a bug and keeps its
traceback. ``--debug`` shows the traceback of a ``MusicrnnError`` too. ``ArgumentParser`` is argparse
with its usage errors raised as ``MusicrnnError``; ``seed`` is the ``type`` of every ``--seed`` option;
``argument_error_line`` shortens jsonargparse's many-line messages for ``train``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from musicrnn.errors import MusicrnnError


def run_command(body: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run a command's ``body`` on ``argv`` (default ``sys.argv[1:]``) without ``--debug``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = "--debug" in argv
    try:
        return body([a for a in argv if a != "--debug"]) or 0
    except MusicrnnError as e:
        if debug:
            raise
        print(f"error: {exception_line(e)}", file=sys.stderr)
        return e.exit_code


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are ``MusicrnnError``s (one line, not the usage text), with ``--debug`` in ``--help``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help="show tracebacks")

    def error(self, message):
        raise MusicrnnError(message)


def seed(text: str) -> int:
    """argparse ``type`` of every ``--seed``: an integer ``torch.manual_seed`` takes (beyond that range it
    raised ``ValueError: Overflow when unpacking long long``, a traceback)."""
    value = int(text)  # not an integer: argparse says "invalid seed value"
    if not -2 ** 63 <= value < 2 ** 64:
        raise argparse.ArgumentTypeError(f"must be from -2^63 to 2^64 - 1, got {value}")
    return value


def argument_error_line(message: str, models: list[str]) -> str:
    """A jsonargparse ``ArgumentError`` message -> one line saying what is wrong and what is valid."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    if keys[:1] == ["config"]:
        return "--config: " + message.split(":", 1)[1].strip().splitlines()[0]
    if keys == ["model"] and ("import path" in message or "not accessible" in message):
        given = re.search(r"Given value: (.*)", message)
        return (f"unknown model {given.group(1).strip() if given else '?'!r}; choose one of {', '.join(models)}")
    if not keys:
        line = message.strip().splitlines()[0]
        return f"{line} (see --help)" if "unrecognized" in line else line
    option = "--" + ".".join(keys)
    if m := re.search(r"Option '([^']+)' is not accepted", message):
        return f"{option}.{m.group(1)} is not an option of this model (see --help)"
    expected = []
    # In a nested key (--model.hidden) the outer union's own "or None" sits at the shallowest indent.
    depth = 8 if len(keys) > 1 else 0
    lines = [ln for ln in message.splitlines() if len(ln) - len(ln.lstrip()) >= depth]
    for t in re.findall(r"Expected a <class '(\w+)'>", "\n".join(lines)):
        name = "None" if t == "NoneType" else t
        if name not in expected:
            expected.append(name)
    given = re.search(r"Got value: (.*)", message) or re.search(r"Given value: (.*)", message)
    if expected and given:
        return f"{option}: expected {' or '.join(expected)}, got {given.group(1).strip()!r}"
    detail = [ln.strip(" -") for ln in message.splitlines()[1:]
              if ln.strip() and not re.match(r"\s*(- )?(Parser key|Does not validate|Subtypes|Errors|Given value"
                                             r"|Expected a <class 'NoneType'>|Problem with given class_path)", ln)]
    return f"{option}: {detail[0] if detail else message.strip().splitlines()[0]}"


def exception_line(e: BaseException) -> str:
    """Any exception's message on one line (Lightning's can span several)."""
    return " ".join(str(e).split()) or type(e).__name__

"""One-line messages for command-line mistakes (jsonargparse's own are many lines of type unions)."""

from __future__ import annotations

import re


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

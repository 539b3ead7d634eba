"""Run a command the way systemd runs edge-agent.service: as its user, with its
environment. scripts/install runs ``edge-agent check`` through this before it switches
to a new version, so the check sees what the service will see.

usage: python3 -I scripts/as-service.py [--env-file FILE] [--user NAME] [--set KEY=VALUE]...
           -- COMMAND [ARG...]

--env-file FILE  read as systemd reads EnvironmentFile=: parsed, never evaluated (a line
                 such as ``A=b touch /tmp/x`` sets A to "b touch /tmp/x" and runs
                 nothing). Read here, by the caller (root: the file is root's only).
--user NAME      become NAME (its group, its supplementary groups such as dialout) before
                 running COMMAND, as User= does: files the service cannot read fail here.
--set KEY=VALUE  set after the file (STATE_DIRECTORY, CONFIGURATION_DIRECTORY).

The environment starts empty, as a service's does (PATH, LANG, and with --user HOME,
USER, LOGNAME), so a variable set in the caller's shell cannot hide a missing one.
Only the standard library: it runs with any Python 3.11.
"""

from __future__ import annotations

import os
import pwd
import re
import sys

WHITESPACE = " \t\n\r"
NEWLINE = "\n\r"
COMMENTS = "#;"
DOUBLE_QUOTE_ESCAPES = '"\\`$'
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _append(chars: list[str], c: str, trailing_ws: int) -> int:
    """Append ``c`` to a key or an unquoted value; returns where its trailing white space
    now starts (-1: none), so that it can be trimmed at the end, as systemd trims them."""
    if c not in WHITESPACE:
        trailing_ws = -1
    elif trailing_ws < 0:
        trailing_ws = len(chars)
    chars.append(c)
    return trailing_ws


def parse_environment_file(text: str) -> dict[str, str]:
    """The assignments of an EnvironmentFile=, as systemd reads them (its parser in
    src/basic/env-file.c, documented in systemd.exec(5) under EnvironmentFile=): comments
    start with # or ;, keys and unquoted values are trimmed, backslash escapes and
    continues lines, '...' is verbatim, "..." knows the shell's escapes, a line without
    "=" or with an invalid name is ignored. Nothing is expanded and nothing is run."""
    found: dict[str, str] = {}
    state = "pre_key"
    key: list[str] = []
    value: list[str] = []
    key_ws = value_ws = -1  # where trailing whitespace starts, -1: none

    def push() -> None:
        name = "".join(key[:key_ws] if key_ws >= 0 else key)
        data = "".join(value[:value_ws] if value_ws >= 0 else value)
        if NAME.match(name):
            found[name] = data

    for c in text:
        if state == "pre_key":
            if c in COMMENTS:
                state = "comment"
            elif c not in WHITESPACE:
                state, key, key_ws = "key", [c], -1
        elif state == "key":
            if c in NEWLINE:
                state = "pre_key"  # no "=": ignored
            elif c == "=":
                state, value, value_ws = "pre_value", [], -1
            else:
                key_ws = _append(key, c, key_ws)
        elif state == "pre_value":
            if c in NEWLINE:
                state = "pre_key"
                push()
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "\\":
                state = "value_escape"
            elif c not in WHITESPACE:
                state = "value"
                value_ws = -1
                value.append(c)
        elif state == "value":
            if c in NEWLINE:
                state = "pre_key"
                push()
            elif c == "\\":
                state = "value_escape"
                value_ws = -1
            else:
                value_ws = _append(value, c, value_ws)
        elif state == "value_escape":
            state = "value"
            if c not in NEWLINE:  # backslash-newline continues the line
                value_ws = -1
                value.append(c)
        elif state == "single":
            if c == "'":
                state = "pre_value"
            else:
                value.append(c)
        elif state == "double":
            if c == '"':
                state = "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value.append(c)
        elif state == "double_escape":
            state = "double"
            if c in DOUBLE_QUOTE_ESCAPES:
                value.append(c)
            elif c not in NEWLINE:
                value.extend(("\\", c))
        elif state == "comment" and c in NEWLINE:
            state = "pre_key"
    # The last line without a newline, or an unterminated quote: systemd keeps it.
    if state not in ("pre_key", "key", "comment"):
        push()
    return found


def main(argv: list[str]) -> int:
    env_file = user = None
    extra: dict[str, str] = {}
    args = list(argv)
    while args and args[0] != "--":
        option = args.pop(0)
        if option in ("--env-file", "--user", "--set") and args:
            argument = args.pop(0)
            if option == "--env-file":
                env_file = argument
            elif option == "--user":
                user = argument
            else:
                name, equals, data = argument.partition("=")
                if not equals or not NAME.match(name):
                    print(f"as-service: --set needs KEY=VALUE, not {argument!r}",
                          file=sys.stderr)
                    return 2
                extra[name] = data
        else:
            print(f"as-service: unknown or incomplete option {option!r}", file=sys.stderr)
            return 2
    command = args[1:]
    if not command:
        print("as-service: no command after --", file=sys.stderr)
        return 2

    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    if "LANG" in os.environ:
        env["LANG"] = os.environ["LANG"]
    if user is not None:
        account = pwd.getpwnam(user)
        env.update(HOME=account.pw_dir, USER=user, LOGNAME=user)
    if env_file is not None and os.path.exists(env_file):  # EnvironmentFile=-...
        with open(env_file, encoding="utf-8") as file:
            env.update(parse_environment_file(file.read()))
    env.update(extra)
    if user is not None:
        os.initgroups(user, account.pw_gid)
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    try:
        os.execvpe(command[0], command, env)
    except OSError as err:
        print(f"as-service: cannot run {command[0]}: {err}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

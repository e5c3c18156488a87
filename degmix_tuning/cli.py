"""`degmix-tuning` command line: every module in `degmix_tuning.commands` adds one subcommand.

A command module defines `register(subparsers)` which adds its parser and sets `func=handler(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="degmix-tuning", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def show_info_lines() -> None:
    """Print the package's info lines (e.g. which checkpoint keys were skipped) on stderr, once, for entry points."""
    log = logging.getLogger("degmix_tuning")
    log.setLevel(logging.INFO)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[degmix-tuning] %(message)s"))
        log.addHandler(handler)


def take_imports(argv: list[str]) -> tuple[list[str], list[str]]:
    """Pull every `--import MODULE` / `--import=MODULE` out of argv (valid before or after the command)."""
    rest, modules = [], []
    it = iter(argv)
    for arg in it:
        if arg == "--import":
            modules.append(next(it, ""))
        elif arg.startswith("--import="):
            modules.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return rest, modules


def main(argv: list[str] | None = None) -> int:
    show_info_lines()
    argv, modules = take_imports(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in argv  # any position: full tracebacks instead of one-line errors
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    parser.epilog = ("--import MODULE (any position, repeatable) first imports a module that registers backbones: a "
                     ".py file, or a module name (on sys.path, else in the current folder); "
                     "--debug (any position) shows full tracebacks. Exit codes: 0 ok, 1 user error (2 in `train`), "
                     "3 diverged, 130 interrupted.")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2

    def run() -> int:
        if modules:
            from .backbones import import_plugins

            import_plugins(modules)
        return int(args.func(args) or 0)

    return run_mapping_errors(run, f"degmix-tuning {args.command}", getattr(args, "error_context", "command"), debug)


def run_mapping_errors(run, label: str, context: str, debug: bool) -> int:
    """Run `run()` for an entry point: a user error becomes one line on stderr and its exit code from the one table
    in errors.py ("command" or "recipe" context); bugs, and every error under `debug`, keep their traceback."""
    try:
        return run()
    except BaseException as exc:  # noqa: BLE001 - mapped by the one table in errors.py; bugs are re-raised
        from .errors import exit_code, user_message

        code = exit_code(exc, context)
        if code is None or debug:
            raise
        print(f"{label}: error: {user_message(exc) or exc or 'interrupted'}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())

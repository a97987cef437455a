"""Conventions shared by the `corpus` and `train` command lines (issues 17 and 18).

Contract:
- A user error (a bad flag, recipe or config; a missing, unreadable or wrong path; a damaged
  build directory) prints ONE line, `error: <where>: <what is wrong>`, on stderr and exits 2,
  never a traceback. `<where>` is the flag, the file (and key inside it) or the path at fault.
- An unexpected exception (a bug) prints one `error: internal error: ...` line and exits 1;
  `REFINERY_TRACEBACK=1` shows its traceback instead.
- Output to a pipe or a file is not cut to 80 columns (`make_console`).
- Long commands show a rich progress bar on a terminal; elsewhere (`> log`, CI) they print a
  plain progress line every `REFINERY_PROGRESS_SECONDS` (default 30) seconds (`progress`).
  Neither prints anything after an error: the error line is the last thing written.

It lives in shards/ because both CLIs use it and train/ never imports corpus/; it imports no
project package (click, typer, rich and pydantic only).
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors click as typer._click; older ones use click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

# exception classes (module, name) that are always the user's fault; matched by name so that
# this module imports none of them (the module is loaded whenever one was raised)
USER_ERRORS = (("corpus.build", "BuildError"), ("corpus.readers", "ReadError"),
               ("shards.format", "ShardFormatError"), ("shards.format", "DiskFullError"),
               ("train.model", "TokenizerMismatch"), ("corpus.recipe", "RecipeError"),
               ("train.safe_load", "CheckpointError"), ("train.flex", "FlexUnavailable"),
               ("corpus.executor", "WorkerDied"))

PIPE_WIDTH = 200  # columns of a console that is not a terminal (tables are only as wide as they need)


class UserError(Exception):
    """A problem with what the user asked for: printed as `error: where: what`, exit 2."""

    def __init__(self, where: str, what: str):
        super().__init__(f"{where}: {what}")
        self.where, self.what = where, what


def make_console(stderr: bool = False):
    """A rich Console; when its stream is not a terminal, lines are not wrapped at 80 columns."""
    from rich.console import Console

    c = Console(stderr=stderr)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c.width = PIPE_WIDTH
        c.soft_wrap = True  # plain lines (paths, messages) are never cut, whatever their length
    return c


# ---------------------------------------------------------------------------------------
# exception -> one line


def _loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _got(value: Any) -> str:
    if isinstance(value, (int, float, str, bool)) or value is None:
        s = repr(value)
        return f" (got {s[:60]})"
    return ""


def validation_error(e: Any, source: str | None = None, flags: dict[str, str] | None = None) -> UserError:
    """A pydantic ValidationError as a UserError: `<flag>` when the field came from a flag,
    else `<source>: <key.path>`; pydantic's wording, the offending value, and the others counted."""
    errs = e.errors(include_url=False)
    parts = []
    for er in errs:
        loc = tuple(x for x in er["loc"] if not (isinstance(x, str) and x.startswith("function-after")))
        key = _loc(loc)
        flag = (flags or {}).get(key)
        where = flag or (f"{source}: {key}" if source and key else source or key or "input")
        msg = er["msg"].removeprefix("Value error, ") + ("" if er["type"] in ("missing", "extra_forbidden") else _got(er.get("input")))
        parts.append((where, msg))
    where, what = parts[0] if parts else (source or "input", str(e))
    if len(parts) > 1:
        what += "; also " + "; ".join(f"{w}: {m}" for w, m in parts[1:4]) + (" ..." if len(parts) > 4 else "")
    return UserError(where, what)


def yaml_error(e: Any, source: str) -> UserError:
    mark = getattr(e, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    what = " ".join(str(x) for x in (getattr(e, "problem", None), getattr(e, "context", None)) if x) or str(e)
    return UserError(where, f"not valid YAML: {what}")


def describe(e: BaseException, command: str = "") -> UserError | None:
    """The user error an exception stands for, or None (a bug); `command` (e.g. `corpus build`)
    is the where of a message that names no place itself."""
    if isinstance(e, UserError):
        return e
    if isinstance(e, ClickException):
        ctx = getattr(e, "ctx", None)
        return UserError(ctx.command_path if ctx is not None else "usage", e.format_message().rstrip("."))
    mods = type(e).__module__
    if mods.startswith("pydantic") and type(e).__name__ == "ValidationError":
        return validation_error(e)
    if mods.startswith("yaml"):
        return yaml_error(e, "YAML")
    for mod, name in USER_ERRORS:
        m = sys.modules.get(mod)
        cls = getattr(m, name, None) if m is not None else None
        if cls is not None and isinstance(e, cls):
            msg = " ".join(str(e).split()) or type(e).__name__
            where, sep, what = msg.partition(": ")
            if sep and len(where) < 300:
                return UserError(where, what)
            flag, _, rest = msg.partition(" ")  # "--out X exists ...": the flag is where
            return UserError(flag, rest) if flag.startswith("--") and rest else UserError(command or type(e).__name__, msg)
    if isinstance(e, OSError):
        if e.errno == errno.EPIPE:
            return None
        if e.filename is None:  # FileNotFoundError("path: what"): the message says where
            msg = " ".join(str(e).split())
            where, sep, what = msg.partition(": ")
            return UserError(where, what) if sep else UserError(command or type(e).__name__, msg)
        return UserError(str(e.filename), (e.strerror or str(e)) + (f" -> {e.filename2}" if e.filename2 else ""))
    return None


def report(e: BaseException, command: str = "") -> int:
    """Print the one error line for `e` on stderr; the exit status (2 user error, 1 bug)."""
    ue = describe(e, command)
    sys.stdout.flush()
    if ue is not None:
        line = f"error: {ue.where}: {ue.what}"
        code = 2
    else:
        if os.environ.get("REFINERY_TRACEBACK"):
            traceback.print_exception(e)
        line = (f"error: internal error: {type(e).__name__}: {' '.join(str(e).split())[:500]} "
                "(a bug; REFINERY_TRACEBACK=1 shows the traceback)")
        code = 1
    sys.stderr.write(" ".join(line.split("\n")) + "\n")
    sys.stderr.flush()
    return code


class ErrorsAsMessages(TyperGroup):
    """A Typer group whose every error, usage or validation, is one `error:` line (see module doc).

    Use as `typer.Typer(cls=ErrorsAsMessages)`; its `main` is what a console script, `python -m`
    and typer's CliRunner all call."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        command = self._command(list(sys.argv[1:] if args is None else args))
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0  # non-standalone click returns an Exit's code
        except typer.Exit as e:
            code = e.exit_code
        except ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # `corpus` alone: the help, already printed
                code = 0
            else:
                code = report(e, command)
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            code = 1
        except BrokenPipeError:  # `corpus stats ... | head`: the reader left, nothing to say
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the interpreter flushes stderr at exit
            code = 1
        except KeyboardInterrupt:
            sys.stderr.write("error: interrupted\n")
            code = 130
        except Exception as e:  # noqa: BLE001 - turned into one line; REFINERY_TRACEBACK shows it
            code = report(e, command)
        if standalone_mode:
            sys.exit(code)
        return code

    def _command(self, argv: list[str]) -> str:
        """`corpus build`, `train run`: the where of an error message that names no place."""
        cmds = list(self.commands.values())
        mod = (getattr(cmds[0].callback, "__module__", "") or "") if cmds else ""
        if mod == "__main__":  # `python -m corpus.cli`
            spec = getattr(sys.modules.get("__main__"), "__spec__", None)
            mod = spec.name if spec is not None else ""
        app = mod.split(".")[0]
        sub = argv[0] if argv and argv[0] in self.commands else ""
        return " ".join(x for x in (app, sub) if x)


@contextmanager
def reading(source: str, flags: dict[str, str] | None = None) -> Iterator[None]:
    """Validation and YAML errors raised inside name `source` (a file, `--flag` or a command)."""
    from pydantic import ValidationError
    import yaml

    try:
        yield
    except ValidationError as e:
        raise validation_error(e, source, flags) from None
    except yaml.YAMLError as e:
        raise yaml_error(e, source) from None
    except UnicodeDecodeError as e:
        raise UserError(source, f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def check_build_dir(path: str, where: str | None = None) -> None:
    """A finished build directory (it has manifest.json), or a UserError saying what it is."""
    where = where or path
    if not os.path.exists(path):
        raise UserError(where, f"{path}: no such build directory" if where != path else "no such build directory")
    if not os.path.isdir(path):
        raise UserError(where, "not a directory (give a `corpus build --out` directory)")
    if not os.path.isfile(os.path.join(path, "manifest.json")):
        unfinished = os.path.exists(os.path.join(path, ".work"))
        raise UserError(where, "no manifest.json: " + (
            "an interrupted build (run the same `corpus build` again to finish it)" if unfinished else
            "not a refinery build directory (`corpus build --out` writes one)"))


# ---------------------------------------------------------------------------------------
# progress


def progress_seconds() -> float:
    try:
        return max(0.1, float(os.environ.get("REFINERY_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


class _Lines:
    """Progress for a pipe or a file: a plain line every `every` seconds (from a daemon thread,
    so that one long step still shows the command is alive), and one final line on success."""

    def __init__(self, console: Any, label: str, every: float):
        self.console, self.label, self.every = console, label, every
        self.total: int | None = None
        self.completed = 0
        self.info = ""
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def line(self) -> str:
        n = f"{self.completed:,}/{self.total:,}" if self.total else f"{self.completed:,}"
        return f"{self.label}: {n}{' ' + self.info if self.info else ''} ({time.monotonic() - self.t0:.0f} s)"

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.console.print(self.line(), markup=False, highlight=False)

    def update(self, total: int | None = None, completed: int | None = None, info: str | None = None) -> None:
        if total is not None:
            self.total = total
        if completed is not None:
            self.completed = completed
        if info is not None:
            self.info = info

    def advance(self, n: int = 1) -> None:
        self.completed += n


class _Bar:
    """Progress on a terminal: a rich bar, erased (not redrawn) if the command fails."""

    def __init__(self, console: Any, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.prog = Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.task = self.prog.add_task(label, total=None, info="")

    def update(self, total: int | None = None, completed: int | None = None, info: str | None = None) -> None:
        kw: dict[str, Any] = {k: v for k, v in (("total", total), ("completed", completed), ("info", info))
                              if v is not None}
        self.prog.update(self.task, **kw)

    def advance(self, n: int = 1) -> None:
        self.prog.advance(self.task, n)


@contextmanager
def progress(console: Any, label: str, every: float | None = None) -> Iterator[Any]:
    """`with progress(console, "tokenize") as p: p.update(total=n, info="..."); p.advance()`.

    A bar on a terminal, plain lines every `every` seconds elsewhere (module doc); on an
    exception nothing more is printed, so the error line that follows is the last line."""
    if console.is_terminal:
        bar = _Bar(console, label)
        bar.prog.start()
        try:
            yield bar
        except BaseException:
            bar.prog.live.transient = True  # erase the bar instead of leaving it above the error
            bar.prog.stop()
            raise
        bar.prog.stop()
        return
    lines = _Lines(console, label, every or progress_seconds())
    lines._thread.start()
    try:
        yield lines
    finally:
        lines._stop.set()
        lines._thread.join()
    console.print(lines.line() + ", done", markup=False, highlight=False)


__all__ = ["ErrorsAsMessages", "UserError", "check_build_dir", "describe", "make_console", "progress", "reading", "report",
           "validation_error"]

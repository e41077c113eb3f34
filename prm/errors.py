"""Errors raised for bad input.

Every error about a data file says where the problem is (file, line, field) so that a
user can open the file and fix it; the CLI prints the message alone, never a traceback.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


class RecordError(ValueError):
    """A record that cannot be read: names the file, the 1-based line and the field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)

    def located(self, *, path: str | None = None, line: int | None = None) -> "RecordError":
        """The same error with the file and line filled in by the reader that knows them."""
        return RecordError(self.reason, path=self.path or path, line=self.line or line,
                           field=self.field)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception by a command that stops cleanly on it (`prm check`):
    finished work is kept as for Ctrl-C, and the exit status is 143 (128 + SIGTERM), the
    status every other command has when SIGTERM ends it."""


class PromptTooLongError(ValueError):
    """A completer refused a prompt because it does not fit the model's context.

    Raised the same way by every backend (in process, or over HTTP from a server's 400
    answer), so annotation treats both alike: the steps whose prefix is too long are left
    unknown and counted, and the run goes on.
    """


@contextmanager
def opening_model(spec: str, folder: str | os.PathLike | None = None):
    """Turn a failure to load a model into one `RecordError` naming it.

    spec: what the user typed (a folder, short name or hub name); folder: where it was
    resolved to, if different. A weights file that cannot be read (truncated, corrupt) is
    named; a spec that is neither a folder nor a reachable hub name is said to be so.
    """
    try:
        yield
    except RecordError:
        raise
    except Exception as err:  # the kinds below are told apart, the rest re-raised
        error = model_error(spec, err, folder)
        if error is err:
            raise
        raise error from err


def model_error(spec: str, err: BaseException, folder: str | os.PathLike | None = None) -> BaseException:
    """The `RecordError` for a model that failed to load with `err` (or `err` itself when it
    is not about the model's files: a bug must keep its traceback)."""
    name = type(err).__name__
    if not str(spec).strip() or (not isinstance(err, (OSError, ValueError, RuntimeError, EOFError, KeyError))
                                 and name not in ("SafetensorError", "UnpicklingError")):
        return err
    if folder is None:
        from prm.model_names import resolve_model  # a short name (tiny-gsm) is a folder too

        try:
            folder = resolve_model(spec)
        except (OSError, ValueError):
            folder = spec
    folder = Path(folder)
    if folder.is_dir():
        bad = _unreadable_weights(folder)
        if bad is not None:
            file, reason = bad
            return RecordError(f"corrupt or truncated model weights ({reason}); replace the file "
                               "or the folder", path=str(file))
        return RecordError(f"cannot load the model: {name}: {_first_line(err)}", path=spec)
    if not folder.exists():
        return RecordError("no such model folder or hub name (offline, or not on the hub)", path=spec)
    return RecordError(f"cannot load the model: {name}: {_first_line(err)}", path=spec)


def _unreadable_weights(folder: Path) -> tuple[Path, str] | None:
    """The first weights file of a model folder that cannot be opened, and why."""
    for file in sorted(folder.glob("*.safetensors")):
        try:
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    handle.get_slice(key)
        except ImportError:
            return None
        except Exception as err:  # noqa: BLE001 - any failure to read the file is the answer
            return file, _first_line(err)
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

"""The user's code and files that `check-layer` loads: a layer factory named as module:factory or
path/to/file.py:factory (`load_factory`), a batch saved with numpy.save (`load_inputs`), and how an exception raised
in user code is named in one line, with the file and line where it was raised (`_where`).
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

from from_scratch.errors import BadInputError


def load_factory(spec: str, what: str) -> object:
    """Call the factory `spec` names (module:factory or path/to/file.py:factory) and return what it makes."""
    import importlib
    import importlib.util

    target, _, name = spec.rpartition(":")
    if not target or not name.isidentifier():
        raise BadInputError(f"{what} {spec!r}: expected module:factory or path/to/file.py:factory")
    is_file = target.endswith(".py") or "/" in target or "\\" in target or Path(target).is_file()
    if is_file and not Path(target).exists():
        raise BadInputError(f"{what} {spec!r}: no such file {target}")
    if is_file and (not Path(target).is_file() or Path(target).suffix != ".py"):
        kind = "a folder" if Path(target).is_dir() else "not a .py file"
        raise BadInputError(f"{what} {spec!r}: {target} is {kind}; give path/to/file.py:factory or module:factory")
    # as `python file.py` and `python -m module` do, the file's folder (or the current one) is importable, so the
    # user's file can import its neighbours
    folder = str(Path(target).resolve().parent if is_file else Path.cwd())
    sys.path.insert(0, folder)
    try:
        if is_file:
            module_spec = importlib.util.spec_from_file_location(f"_parity_{Path(target).stem}", target)
            if module_spec is None or module_spec.loader is None:
                raise BadInputError(f"{what} {spec!r}: {target} cannot be imported as a Python file")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except BadInputError:
        raise
    except ModuleNotFoundError as exc:
        if (
            exc.name is not None and target.split(".")[0] == exc.name.split(".")[0]
        ):  # the module itself, not a neighbour
            raise BadInputError(
                f"{what} {spec!r}: no module named {exc.name!r}; give path/to/file.py:factory or "
                "an importable module:factory"
            ) from None
        raise BadInputError(f"{what} {spec!r}: importing {target} raised {_where(exc)}") from None
    except (Exception, SystemExit) as exc:  # the user's module failed to import (or exited): one line, with where
        raise BadInputError(f"{what} {spec!r}: importing {target} raised {_where(exc)}") from None
    finally:
        sys.path.remove(folder)
    if is_file:
        _GIVEN_PATHS[str(Path(target).resolve())] = target
    if not hasattr(module, name):
        raise BadInputError(f"{what} {spec!r}: {target} has no function {name!r}")
    factory = getattr(module, name)
    if not callable(factory):
        raise BadInputError(
            f"{what} {spec!r}: {target}'s {name} is {type(factory).__name__!r}, not a function that makes the layer"
        )
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:  # it needs arguments: said before calling it
        raise BadInputError(f"{what} {spec!r}: {name}() must take no argument ({exc})") from None
    except ValueError:  # a builtin without a signature: calling it will tell
        pass
    try:
        return factory()
    except (Exception, SystemExit) as exc:  # SystemExit too: user code must not set this command's exit code
        raise BadInputError(f"{what} {spec!r}: {name}() raised {_where(exc)}") from None


#: The files the user named on the command line: resolved path -> the path as given (how errors name them).
_GIVEN_PATHS: dict[str, str] = {}


def _shown_path(filename: str) -> str:
    """How an error names a source file: a file given on the command line as it was given; another file by its
    path relative to the current folder when it lies below it, else by its full path (a bare name such as
    layers.py could be the user's or this package's)."""
    path = Path(filename)
    try:
        resolved = str(path.resolve())
    except OSError:
        return filename
    if resolved in _GIVEN_PATHS:
        return _GIVEN_PATHS[resolved]
    try:
        return str(Path(resolved).relative_to(Path.cwd().resolve()))
    except ValueError:
        return resolved


def _where(exc: BaseException) -> str:
    """ "ValueError: message (at path/to/file.py:12 in build)": the exception and where it was raised, the innermost
    frame outside the installed libraries (what raised inside NumPy or Keras was called from there), else the
    innermost frame."""
    import sysconfig
    import traceback

    libraries = {str(Path(sysconfig.get_path(key)).resolve()) for key in ("stdlib", "purelib", "platlib")}

    def in_library(filename: str) -> bool:
        return any(str(Path(filename).resolve()).startswith(folder + os.sep) for folder in libraries)

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]  # no <frozen ..>
    own = [f for f in frames if not in_library(f.filename)]
    frame = own[-1] if own else frames[-1] if frames else None
    place = f" (at {_shown_path(frame.filename)}:{frame.lineno} in {frame.name})" if frame else ""
    return f"{type(exc).__name__}: {exc}{place}"


def load_inputs(path: str) -> object:
    """The batch saved in `path` (numpy.save's .npy format), checked as check_layer checks a batch; refused in one
    line naming the file when it is missing, not .npy, unreadable, or not a batch of finite real numbers."""
    import numpy as np

    what = f"--inputs {path}"
    if not Path(path).exists():
        raise BadInputError(f"{what}: no such file")
    if not Path(path).is_file():
        raise BadInputError(f"{what}: not a file")
    if Path(path).suffix.lower() != ".npy":
        raise BadInputError(f"{what}: not a .npy file (save the batch with numpy.save(path, x))")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise BadInputError(f"{what}: cannot be read ({exc.strerror or exc})") from None
    if magic != b"\x93NUMPY":
        raise BadInputError(f"{what}: not in .npy format (save the batch with numpy.save(path, x))")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise BadInputError(f"{what}: holds Python objects (dtype object); save an array of numbers") from None
        raise BadInputError(f"{what}: cannot be read as a .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise BadInputError(f"{what}: cannot be read as a .npy array ({exc})") from None

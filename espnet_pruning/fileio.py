"""Writing files so that a reader never sees a half-written one."""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Dict, Iterator, Union

import yaml

from espnet_pruning.errors import DataError

#: libyaml's parser where PyYAML was built with it: the ``config.yaml`` of a Whisper run
#: holds its 50k-entry token list, 2.1 s with the pure-Python parser and 0.2 s with this.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: Union[str, os.PathLike], binary: bool = False) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it to ``path`` on success.

    The parent directory is created if needed. The file is flushed and synced before the
    rename. On any error the temporary file is removed and ``path`` keeps its previous
    content (or stays absent).

    Examples:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_open(out) as f:
        ...     _ = f.write("hello")
        >>> out.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(
            fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})
        ) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Union[str, os.PathLike], text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(text)


def read_yaml(path: Union[str, os.PathLike]) -> Any:
    """The content of a YAML file, as :func:`yaml.safe_load` reads it, parsed by libyaml.

    Examples:
        >>> import tempfile, pathlib
        >>> conf = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
        >>> _ = conf.write_text("token_list: [a, b]\\nbatch_size: 2\\n")
        >>> read_yaml(conf)
        {'token_list': ['a', 'b'], 'batch_size': 2}
    """
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_SAFE_LOADER)


def fsync_dir(path: Union[str, os.PathLike]) -> None:
    """Make renames inside ``path`` durable (no-op where directories cannot be synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_kaldi_map(path: Union[str, os.PathLike]) -> Dict[str, str]:
    """Read ``<uttid> <value>`` lines; errors name the file and line."""
    path = Path(path)
    out: Dict[str, str] = {}
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            uid, _, value = line.partition(" ")
            if uid in out:
                raise DataError(f"{path}:{n}: duplicate utterance id {uid}")
            out[uid] = value.strip()
    return out

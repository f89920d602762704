"""Walk folders and read files safely: skip binaries, cap sizes, decode invalid UTF-8.

Nothing here raises on a bad file: each problem becomes a `ScanWarning` and the scan goes on.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from warden.scan.model import ScanWarning

# Files above this size are skipped: credentials sit in source and configuration, and a
# 50 MB data dump would cost more than the rest of a repository.
DEFAULT_MAX_FILE_SIZE = 20 * 1024 * 1024
# A line this long is minified code or data: it is scanned, but reported once.
LONG_LINE = 100_000

_SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".tox",
        ".venv",
        "venv",
        ".terraform",
    }
)
# Extensions of binary formats, skipped without reading them.
_BINARY_SUFFIXES = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".bmp",
        ".ico",
        ".webp",
        ".tiff",
        ".pdf",
        ".zip",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".zst",
        ".7z",
        ".rar",
        ".jar",
        ".war",
        ".whl",
        ".egg",
        ".so",
        ".dylib",
        ".dll",
        ".exe",
        ".o",
        ".a",
        ".lib",
        ".pyc",
        ".pyo",
        ".class",
        ".wasm",
        ".bin",
        ".dat",
        ".db",
        ".sqlite",
        ".sqlite3",
        ".npy",
        ".npz",
        ".mat",
        ".sav",
        ".pkl",
        ".pickle",
        ".parquet",
        ".feather",
        ".h5",
        ".hdf5",
        ".mp3",
        ".mp4",
        ".mov",
        ".avi",
        ".wav",
        ".ogg",
        ".flac",
        ".woff",
        ".woff2",
        ".ttf",
        ".otf",
        ".eot",
        ".psd",
        ".iso",
        ".dmg",
        ".deb",
        ".rpm",
        ".pack",
        ".idx",
        ".onnx",
        ".pt",
        ".pth",
        ".safetensors",
        ".tflite",
    }
)
# Source code, and markup and stylesheets that embed it: an unquoted value after `=` or `:`
# is an expression or a style there, not a literal.
_CODE_SUFFIXES = frozenset(
    {
        ".html",
        ".htm",
        ".xhtml",
        ".css",
        ".scss",
        ".sass",
        ".less",
        ".py",
        ".pyi",
        ".pyx",
        ".js",
        ".jsx",
        ".mjs",
        ".cjs",
        ".ts",
        ".tsx",
        ".go",
        ".java",
        ".kt",
        ".kts",
        ".scala",
        ".rb",
        ".php",
        ".cs",
        ".vb",
        ".fs",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".cxx",
        ".rs",
        ".swift",
        ".m",
        ".mm",
        ".dart",
        ".lua",
        ".pl",
        ".pm",
        ".r",
        ".jl",
        ".ex",
        ".exs",
        ".erl",
        ".clj",
        ".groovy",
        ".gradle",
        ".vue",
        ".svelte",
        ".f90",
        ".pxd",
        ".cu",
        ".sol",
        ".zig",
        ".nim",
    }
)


@dataclass(frozen=True)
class SourceFile:
    """A file to scan: `path` is absolute, `relative` the POSIX path reported in findings."""

    path: Path
    relative: str


def is_code(path: str) -> bool:
    """Tell whether a path is source code (or markup embedding it), where unquoted values
    are expressions."""
    return os.path.splitext(path)[1].lower() in _CODE_SUFFIXES


def has_binary_suffix(path: str) -> bool:
    name = PurePosixPath(path).name.lower()
    if ".so." in name:
        return True
    return PurePosixPath(name).suffix in _BINARY_SUFFIXES


def looks_binary(data: bytes) -> bool:
    """Tell whether content is binary: a NUL byte in the first 8 KiB, as git decides."""
    return b"\0" in data[:8192]


def find_root(path: Path) -> Path:
    """Return the git work tree that contains `path`, else the folder that was given.

    Findings report paths relative to this root, so that fingerprints stay the same whichever
    subfolder of a repository is scanned.
    """
    start = path if path.is_dir() else path.parent
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return start


def walk(root_argument: Path, warnings: list[ScanWarning]) -> Iterator[SourceFile]:
    """Yield the files under `root_argument` (or the file itself) in a stable order.

    Skips VCS and dependency folders, symlinks and known binary extensions. Unreadable
    folders become warnings.
    """
    path = root_argument.resolve()
    root = find_root(path)
    if path.is_file():
        yield SourceFile(path, printable_path(path.relative_to(root).as_posix()))
        return
    if not path.is_dir():
        warnings.append(
            ScanWarning(
                "unreadable",
                printable_path(str(path)),
                "skipped: not a regular file (a FIFO, socket or device)",
            )
        )
        return

    def on_error(error: OSError) -> None:
        warnings.append(
            ScanWarning(
                "unreadable",
                printable_path(str(error.filename)),
                f"cannot list folder: {error.strerror}",
            )
        )

    for folder, dirs, files in os.walk(path, onerror=on_error):
        dirs[:] = sorted(name for name in dirs if name not in _SKIPPED_DIRS)
        for name in sorted(files):
            full = Path(folder, name)
            if full.is_symlink():
                continue
            yield SourceFile(full, printable_path(full.relative_to(root).as_posix()))


def printable_path(path: str) -> str:
    """Return a path as valid UTF-8 text for findings and reports.

    Python decodes the bytes of a file name that are not UTF-8 into lone surrogates, which
    no UTF-8 output can encode. They become `\\xNN` escapes here, as in the names of git
    history blobs, so a file reports the same path and fingerprint in both scans.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def size_of(source: SourceFile) -> int:
    """Return a file's size in bytes, 0 when it cannot be read (`read` then warns)."""
    try:
        return source.path.stat().st_size
    except OSError:
        return 0


def read(source: SourceFile, max_size: int, warnings: list[ScanWarning]) -> bytes | None:
    """Read a file's bytes, or return None (with a warning) when it cannot or should not be
    scanned.

    Only regular files are read. The file is opened without blocking and checked on the open
    descriptor, so a FIFO, socket or device, or a file swapped for one after the walk, is
    skipped instead of waiting for a writer or reading forever. At most `max_size` bytes are
    read, also from a file that grows after its size was checked.
    """
    if has_binary_suffix(source.relative):
        return None
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        descriptor = os.open(source.path, flags)
    except OSError as error:
        warnings.append(
            ScanWarning("unreadable", source.relative, f"cannot read: {error.strerror}")
        )
        return None
    with os.fdopen(descriptor, "rb") as handle:
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                warnings.append(
                    ScanWarning(
                        "unreadable",
                        source.relative,
                        "skipped: not a regular file (a FIFO, socket or device)",
                    )
                )
                return None
            size = status.st_size
            data = handle.read(max_size + 1) if size <= max_size else b""
        except OSError as error:
            warnings.append(
                ScanWarning("unreadable", source.relative, f"cannot read: {error.strerror}")
            )
            return None
    if size > max_size or len(data) > max_size:
        reason = f"{size} bytes is" if size > max_size else "it grew while it was read,"
        warnings.append(
            ScanWarning(
                "too_large",
                source.relative,
                f"skipped: {reason} above the limit of {max_size} bytes "
                "(raise it with --max-file-size)",
            )
        )
        return None
    if looks_binary(data):
        warnings.append(
            ScanWarning("binary", source.relative, "skipped: binary content (NUL byte)")
        )
        return None
    return data


def decode(data: bytes, relative: str, warnings: list[ScanWarning]) -> str:
    """Decode UTF-8; invalid bytes become U+FFFD and the file is read anyway, with a warning."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        warnings.append(
            ScanWarning(
                "invalid_utf8",
                relative,
                f"invalid UTF-8 at byte {error.start}; read with replacement characters",
            )
        )
        return data.decode("utf-8", "replace")


def has_long_line(data: bytes) -> bool:
    """Tell whether a line of `data` is longer than `LONG_LINE` bytes."""
    return len(data) > LONG_LINE and max(map(len, data.split(b"\n"))) > LONG_LINE

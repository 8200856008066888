"""Output folders that never destroy a file they did not write.

Every command that writes a folder (``xai-jax explain``'s report, ``xai-jax evaluate``'s tables and
plots) goes through :func:`write_folder` with a :class:`Layout`: the names the output owns and the
format marker of its ``manifest.json``.  ``out_dir`` may be missing, empty, or an earlier output of the
same layout (recognised by its manifest, which lists its files): then the earlier output is replaced as
a whole and none of its files stays behind.  Any other content is an error
(:class:`~xai_jax.core.errors.OutputError`) raised before a file is written; ``overwrite=True`` writes
beside such files and keeps them, but still refuses when one of the layout's own names holds something
it did not write.  The output is first written into a temporary sibling folder and moved into place only
when complete, so a failure part-way leaves the earlier content as it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.errors import OutputError

_SHOWN = 6


@dataclasses.dataclass(frozen=True)
class Layout:
    """What an output folder owns.

    Attributes:
      format: the ``"format"`` marker written into ``manifest.json``.
      entries: the top-level names the output writes (``manifest.json`` is always one of them).
      folders: those of ``entries`` that are folders of plain files.
      what: how messages name the output ("report", "evaluation").
      legacy: optional: the files of an output written before the format marker existed, from its manifest.
    """

    format: str
    entries: tuple[str, ...]
    folders: tuple[str, ...] = ()
    what: str = "output"
    legacy: Callable[[Mapping[str, Any]], set[str] | None] | None = None

    def __post_init__(self) -> None:
        if "manifest.json" not in self.entries or not set(self.folders) <= set(self.entries):
            raise ValueError("a Layout's entries include manifest.json and its folders")

    def owns(self, rel: Any) -> bool:
        """Whether a manifest entry names a file inside this layout's entries: a tampered manifest must
        never make us move anything else (``../x``, ``/etc/x``, ``notes.txt``)."""
        if not isinstance(rel, str):
            return False
        parts = PurePosixPath(rel).parts
        return bool(parts) and not PurePosixPath(rel).is_absolute() and ".." not in parts and parts[0] in self.entries


def _listing(paths: list[str]) -> str:
    shown = ", ".join(paths[:_SHOWN])
    return shown + (f" (+{len(paths) - _SHOWN} more)" if len(paths) > _SHOWN else "")


def _earlier_files(folder: Path, layout: Layout) -> set[str]:
    """Relative paths of the files of an earlier output of ``layout`` in ``folder`` (empty: none)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(manifest, dict):
        return set()
    if manifest.get("format") == layout.format:
        files = manifest.get("files")
        return {f for f in files if layout.owns(f)} | {"manifest.json"} if isinstance(files, list) else set()
    return (layout.legacy(manifest) if layout.legacy else None) or set()


def _survey(out: Path, layout: Layout) -> tuple[set[str], list[str]]:
    """``(ours, foreign)``: the files of an earlier output in ``out``, and every other entry.  Only the
    top level and the layout's own folders are read, so a large foreign folder costs one listing."""
    listed = _earlier_files(out, layout)
    ours: set[str] = set()
    foreign: list[str] = []
    for entry in sorted(os.scandir(out), key=lambda e: e.name):
        if entry.name in layout.folders and entry.is_dir(follow_symlinks=False):
            # The layout writes plain files here, never subfolders: anything else is someone else's.
            for inner in sorted(os.scandir(entry.path), key=lambda e: e.name):
                rel = f"{entry.name}/{inner.name}"
                if rel in listed and not inner.is_dir(follow_symlinks=False):
                    ours.add(rel)
                else:
                    foreign.append(rel + ("/" if inner.is_dir(follow_symlinks=False) else ""))
        elif entry.name in listed and not entry.is_dir(follow_symlinks=False):
            ours.add(entry.name)
        else:
            foreign.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    return ours, foreign


def _check_writable(folder: Path, out: Path, what: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the {what} to {out}: {folder} is not writable; choose another folder.")


def plan(out: Path, layout: Layout, overwrite: bool) -> set[str] | None:
    """The files of an earlier output that writing to ``out`` replaces (``None``: ``out`` does not
    exist yet), or :class:`OutputError` when writing there would destroy anything else."""
    what = layout.what
    if not os.path.lexists(out):
        ancestor = out.parent
        while not os.path.lexists(ancestor):
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise OutputError(f"cannot create the {what} folder {out}: {ancestor} is a file, not a folder.")
        _check_writable(ancestor, out, what)
        return None
    if not out.is_dir():
        raise OutputError(
            f"{out} exists and is not a folder; give a folder (new, empty, or an earlier {what}) for the {what}."
        )
    _check_writable(out, out, what)
    _check_writable(out.parent, out, what)  # the output is first written into a temporary folder beside it
    ours, foreign = _survey(out, layout)
    if not foreign:
        return ours
    if not overwrite:
        held = (
            f"an earlier xai_jax {what} and files it did not write"
            if ours
            else f"files that are not an xai_jax {what}'s"
        )
        raise OutputError(
            f"{out} holds {held}: {_listing(foreign)}. Nothing was written. Choose a new or empty folder, or pass "
            f"overwrite=True (CLI: --overwrite) to write the {what} beside these files (they are kept"
            + (f"; the earlier {what} is replaced)." if ours else ").")
        )
    clash = [f for f in foreign if PurePosixPath(f).parts[0] in layout.entries]
    if clash:
        raise OutputError(
            f"{out} holds {_listing(clash)}, which the {what} would replace but xai_jax did not write. Nothing was "
            "written: even with overwrite, files xai_jax did not write are never deleted. Choose another folder."
        )
    return ours


def check_folder(out_dir: str | os.PathLike[str], layout: Layout, *, overwrite: bool = False) -> None:
    """Raise :class:`OutputError` if :func:`write_folder` would refuse ``out_dir``.  Creates nothing:
    callers check before a long computation."""
    plan(Path(os.path.realpath(out_dir)), layout, overwrite)


def _sibling(out: Path, tag: str) -> Path:
    """A new folder beside ``out`` (same file system, so moving from it is a rename), with the default
    permissions (``tempfile.mkdtemp`` would make the output private to its owner)."""
    while True:
        path = out.parent / f".{out.name}.{tag}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _install(tmp: Path, out: Path, old: set[str] | None, layout: Layout) -> None:
    """Move the finished output from ``tmp`` into ``out``, replacing the files ``old`` of an earlier one."""
    if old is None:
        os.rename(tmp, out)  # siblings on one file system: atomic
        return
    trash = _sibling(out, "old")
    # The earlier manifest leaves last and the new one arrives first: at every moment the folder's
    # manifest lists each of its files in it, so an interrupted run is still replaced as a whole.
    for rel in sorted(old, key=lambda r: r == "manifest.json"):
        if os.path.lexists(out / rel):
            (trash / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(out / rel, trash / rel)
    for sub in layout.folders:
        folder = out / sub
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    for entry in sorted(tmp.iterdir(), key=lambda e: e.name != "manifest.json"):
        os.rename(entry, out / entry.name)
    tmp.rmdir()
    shutil.rmtree(trash, ignore_errors=True)


def write_folder(
    out_dir: str | os.PathLike[str],
    layout: Layout,
    write: Callable[[Path], Mapping[str, Any]],
    *,
    overwrite: bool = False,
) -> None:
    """Write an output of ``layout`` into ``out_dir`` (see the module docstring for what is refused).

    ``write(folder)`` writes every file into the new, empty ``folder`` and returns the manifest's
    content; the format marker and the list of files are added here, and the manifest is written last.
    """
    target = Path(os.path.realpath(out_dir))  # through a symlink: the output goes where it points, the link stays
    old = plan(target, layout, overwrite)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _sibling(target, "writing")
        content = dict(write(tmp))
        written = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        stray = [f for f in written if not layout.owns(f) or f == "manifest.json"]
        if stray:
            raise AssertionError(f"{layout.what} wrote files outside its layout: {stray}")
        manifest = {"format": layout.format, **content, "files": [*written, "manifest.json"]}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        _install(tmp, target, old, layout)
    except OSError as err:
        raise OutputError(f"could not write the {layout.what} to {out_dir}: {err}") from err
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

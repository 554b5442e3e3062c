"""A local folder copied to an object store file by file, for tests that stage an artifact where a store holds it."""

from pathlib import Path

from artifacts import storage


def upload_tree(local_dir: "str | Path", uri: str) -> list[str]:
    """Copy every file under ``local_dir`` to ``uri`` (same relative names); returns them."""
    local_dir = Path(local_dir)
    names = sorted(p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file())
    for name in names:
        storage.write_bytes(storage.join(uri, *name.split("/")), (local_dir / name).read_bytes())
    return names

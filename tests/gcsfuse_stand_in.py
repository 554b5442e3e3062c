"""A stand-in for Cloud Storage FUSE (gcsfuse) as Vertex AI mounts it at ``/gcs``: a real FUSE mount.

No Vertex AI runs in these tests. This is a pass-through FUSE file system over a
local folder (libfuse 3 through the ``mfusepy`` binding) that refuses what gcsfuse
refuses with its default flags on a flat bucket (
GoogleCloudPlatform/gcsfuse ``docs/semantics.md`` and ``internal/fs/fs.go``):

- renaming a **non-empty directory** fails with EMFILE ("too many open files"; the
  rename-dir limit is 0 by default since v0.35, and the check returns
  ``syscall.EMFILE``); an empty directory renames; a file renames;
- chmod and chown succeed and change nothing (files stay 0644, folders 0755);
- hard links fail (EPERM);
- O_TMPFILE is not supported (the kernel's FUSE client answers EOPNOTSUPP for a
  file system that does not implement it, as gcsfuse does not);
- a file's content becomes visible to others when it is closed (here at once:
  stricter visibility is not modelled).

    python tests/gcsfuse_stand_in.py BACKING_DIR MOUNTPOINT     # foreground; unmount with fusermount3 -u
"""

from __future__ import annotations

import errno
import os
import sys
import threading

import mfusepy

FILE_MODE = 0o644
DIR_MODE = 0o755


class GcsfuseSemantics(mfusepy.Operations):
    """Pass-through to ``root`` with gcsfuse's refusals."""

    use_ns = True

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.rwlock = threading.Lock()

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    # ---- what gcsfuse does differently
    def chmod(self, path, mode):
        return 0  # silently ignored

    def chown(self, path, uid, gid):
        return 0  # silently ignored

    def link(self, target, source):
        raise mfusepy.FuseOSError(errno.EPERM)

    def rename(self, old, new):
        full_old = self._full(old)
        if os.path.isdir(full_old) and os.listdir(full_old):
            # gcsfuse: "too many open files" when the folder holds more objects than
            # rename-dir-limit (0 by default): a non-empty folder never renames.
            raise mfusepy.FuseOSError(errno.EMFILE)
        os.rename(full_old, self._full(new))
        return 0

    def getattr(self, path, fh=None):
        st = os.lstat(self._full(path))
        kind = st.st_mode & 0o170000
        mode = kind | (DIR_MODE if kind == 0o040000 else FILE_MODE)
        return {
            "st_mode": mode,
            "st_nlink": st.st_nlink,
            "st_size": st.st_size,
            "st_uid": st.st_uid,
            "st_gid": st.st_gid,
            "st_atime": st.st_atime_ns,  # use_ns: times in nanoseconds
            "st_mtime": st.st_mtime_ns,
            "st_ctime": st.st_ctime_ns,
        }

    def symlink(self, target, source):
        raise mfusepy.FuseOSError(errno.EPERM)  # gcsfuse keeps symlinks only with a flag; none here

    # ---- plain pass-through
    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def create(self, path, mode, fi=None):
        return os.open(self._full(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)

    def flush(self, path, fh):
        return os.fsync(fh) or 0

    def fsync(self, path, datasync, fh):
        return (os.fdatasync(fh) if datasync else os.fsync(fh)) or 0

    def mkdir(self, path, mode):
        return os.mkdir(self._full(path), DIR_MODE) or 0

    def open(self, path, flags):
        return os.open(self._full(path), flags)

    def read(self, path, size, offset, fh):
        with self.rwlock:
            os.lseek(fh, offset, 0)
            return os.read(fh, size)

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._full(path))]

    def readlink(self, path):
        return os.readlink(self._full(path))

    def release(self, path, fh):
        return os.close(fh) or 0

    def rmdir(self, path):
        return os.rmdir(self._full(path)) or 0

    def statfs(self, path):
        stv = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {key: getattr(stv, key) for key in keys}

    def truncate(self, path, length, fh=None):
        with open(self._full(path), "r+b") as f:
            f.truncate(length)
        return 0

    def unlink(self, path):
        return os.unlink(self._full(path)) or 0

    def utimens(self, path, times=None):
        if times is None:
            os.utime(self._full(path))
        else:
            os.utime(self._full(path), ns=times)
        return 0

    def write(self, path, data, offset, fh):
        with self.rwlock:
            os.lseek(fh, offset, 0)
            return os.write(fh, data)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tests/gcsfuse_stand_in.py BACKING_DIR MOUNTPOINT", file=sys.stderr)
        return 2
    backing, mountpoint = argv
    mfusepy.FUSE(GcsfuseSemantics(backing), mountpoint, foreground=True, nothreads=False, allow_other=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

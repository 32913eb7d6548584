#!/usr/bin/python3
"""A pass-through FUSE file system whose fsync fails on demand.

    failfs.py BACKING MOUNTPOINT SWITCH

Every operation goes to the same path under BACKING, except that while the
file SWITCH exists, fsync and fdatasync of any file (and of a directory) fail
with EIO, as a dying disk's would. It prints "mounted" once the kernel has
mounted it, and serves in the foreground until unmounted.

No file system on the test machine fails fsync on demand (there is no
device-mapper for dm-error), so tests/tests/faults.rs puts the relay's store
on this one to see what the relay does with a real failing fdatasync.
Debian's python3-fusepy provides the library (module `fusepy`; upstream calls
it `fuse`).
"""

import errno
import os
import sys

try:
    from fuse import FUSE, FuseOSError, Operations
except ImportError:
    from fusepy import FUSE, FuseOSError, Operations


class FailFs(Operations):
    def __init__(self, backing, switch):
        self.backing = os.path.realpath(backing)
        self.switch = switch

    def _path(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def init(self, path):
        print("mounted", flush=True)

    def _failing(self):
        return os.path.exists(self.switch)

    # Metadata
    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime",
                "st_nlink", "st_size", "st_uid", "st_blocks")
        return {k: getattr(st, k) for k in keys}

    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._path(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._path(path), times)

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    # Directories
    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def mkdir(self, path, mode):
        os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        os.rmdir(self._path(path))

    def fsyncdir(self, path, datasync, fh):
        if self._failing():
            raise FuseOSError(errno.EIO)
        return 0

    # Names
    def rename(self, old, new):
        os.rename(self._path(old), self._path(new))

    def unlink(self, path):
        os.unlink(self._path(path))

    def link(self, target, source):
        os.link(self._path(source), self._path(target))

    def symlink(self, target, source):
        os.symlink(source, self._path(target))

    def readlink(self, path):
        return os.readlink(self._path(path))

    # Files
    def open(self, path, flags):
        return os.open(self._path(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        if fh is None:
            os.truncate(self._path(path), length)
        else:
            os.ftruncate(fh, length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, datasync, fh):
        if self._failing():
            raise FuseOSError(errno.EIO)
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    backing, mountpoint, switch = sys.argv[1:]
    # nothreads: one request at a time is plenty for a test, and keeps the
    # switch's effect on each fsync unambiguous.
    FUSE(FailFs(backing, switch), mountpoint, foreground=True, nothreads=True)


if __name__ == "__main__":
    main()

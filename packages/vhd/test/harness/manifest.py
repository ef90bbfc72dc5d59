#!/usr/bin/env python3
"""Walk a directory tree and print a JSON manifest of everything a layer must preserve.

Usage: manifest.py ROOT  ->  JSON {"entries": [...]} on stdout.

Each entry: path ("." for the root, else relative with "/"), type, mode (st_mode & 0o7777),
uid, gid, mtimeNs (decimal string, st_mtime_ns, may be negative), nlink, ino, blocks
(st_blocks, 512-byte units), size (files, symlinks), sha256 (files), target (symlinks),
rdevMajor/rdevMinor (devices), xattrs {name: hex value} read without following symlinks,
linkGroup (the smallest path sharing this inode when more than one path does).

Names that are not valid UTF-8 survive through surrogateescape, the same on both sides.
Holes are hashed without reading them (SEEK_DATA/SEEK_HOLE) so a 1 GiB sparse file is cheap.
"""
import hashlib, json, os, stat, sys

ZERO = bytes(1 << 20)


def hash_file(path, size):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                data = size  # ENXIO: only a hole remains
            data = min(data, size)
            while pos < data:  # a hole reads as zeros
                n = min(len(ZERO), data - pos)
                h.update(ZERO[:n])
                pos += n
            if pos >= size:
                break
            try:
                hole = min(os.lseek(fd, pos, os.SEEK_HOLE), size)
            except OSError:
                hole = size
            os.lseek(fd, pos, os.SEEK_SET)
            while pos < hole:
                chunk = os.read(fd, min(4 << 20, hole - pos))
                if not chunk:
                    raise IOError(f"{path}: short read at {pos} of {size}")
                h.update(chunk)
                pos += len(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def kind(m):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket")):
        if test(m):
            return name
    return "unknown"


def entry(root, rel):
    full = root if rel == "." else os.path.join(root, rel)
    st = os.lstat(full)
    t = kind(st.st_mode)
    e = {"path": rel, "type": t, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
         "mtimeNs": str(st.st_mtime_ns), "nlink": st.st_nlink, "ino": st.st_ino, "blocks": st.st_blocks}
    if t == "file":
        e["size"] = st.st_size
        e["sha256"] = hash_file(full, st.st_size)
    elif t == "symlink":
        e["size"] = st.st_size
        e["target"] = os.readlink(full)
    elif t in ("char", "block"):
        e["rdevMajor"] = os.major(st.st_rdev)
        e["rdevMinor"] = os.minor(st.st_rdev)
    xs = {}
    for name in os.listxattr(full, follow_symlinks=False):
        xs[name] = os.getxattr(full, name, follow_symlinks=False).hex()
    e["xattrs"] = dict(sorted(xs.items()))
    return e


def main():
    root = sys.argv[1]
    out = [entry(root, ".")]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = os.path.relpath(dirpath, root)
        for n in sorted(dirnames + filenames):
            rel = n if base == "." else base + "/" + n
            out.append(entry(root, rel))
    groups = {}
    for e in out:
        if e["type"] != "dir":
            groups.setdefault(e["ino"], []).append(e["path"])
    for e in out:
        g = groups.get(e["ino"]) if e["type"] != "dir" else None
        if g and len(g) > 1:
            e["linkGroup"] = min(g)
    out.sort(key=lambda e: e["path"])
    json.dump({"entries": out}, sys.stdout)


if __name__ == "__main__":
    main()

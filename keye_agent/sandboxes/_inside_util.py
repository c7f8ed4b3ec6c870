"""Part of the in-container program (see `_inside.py`): output capture with a cap, and the /workspace snapshots
that tell which files a call created or changed."""

import os

try:  # on the host (linters, tests) the parts are sibling modules; in the container they are one source
    from ._inside_facts import WORKSPACE
except ImportError:
    pass

MAX_FILES_SCAN = 5000


class Capture:
    """Keeps the head and the tail of a stream past the cap, and counts what was dropped."""

    def __init__(self, cap):
        self.head_cap = cap - cap // 4
        self.tail_cap = cap // 4
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data):
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_cap:
            self.tail += data
            if len(self.tail) > self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    def result(self):
        kept = len(self.head) + len(self.tail)
        if kept >= self.total:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace"), False
        note = f"\n... [{self.total - kept} bytes of output omitted] ...\n".encode()
        return (bytes(self.head) + note + bytes(self.tail)).decode("utf-8", "replace"), True


def snapshot():
    """(mtime, size) of every file under /workspace, to report the files a call created or changed."""
    seen = {}
    stack = [WORKSPACE]
    while stack and len(seen) < MAX_FILES_SCAN:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    seen[e.path] = (st.st_mtime_ns, st.st_size)
            except OSError:
                continue
    return seen


def changed_files(before, after):
    return sorted(p for p, v in after.items() if before.get(p) != v)


def prepare_home():
    """Copy the font cache made at build time where matplotlib looks, so the first plot skips a font scan."""
    target = os.environ.get("MPLCONFIGDIR", "/tmp/matplotlib")
    os.makedirs(target, exist_ok=True)
    src = "/opt/keye/matplotlib"
    for name in os.listdir(src) if os.path.isdir(src) else []:
        try:
            with open(os.path.join(src, name), "rb") as f, open(os.path.join(target, name), "wb") as g:
                g.write(f.read())
        except OSError:
            pass

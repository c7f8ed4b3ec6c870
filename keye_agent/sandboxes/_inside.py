"""The program that runs inside a sandbox container (PID 1): the supervisor.

It is never imported on the host. `_inside_facts.py`, `_inside_util.py`, `_inside_kernel.py` and this file are
joined into one source and sent as ``python3 -c <source>``; they need only the container's Python 3.11 standard
library.

Two processes live in the container:

* the **supervisor** (this program, PID 1) speaks a JSON-lines protocol with the host over the container's
  stdin/stdout (the attach stream). It never runs user code, so it survives whatever that code does. As PID 1 of
  the PID namespace it ignores signals sent from inside, reaps orphans, and can kill every other process with
  ``kill(-1, SIGKILL)``;
* the **kernel**, a forked child that executes Python cells in one persistent globals dict. Its fds 1 and 2 are
  pipes read by the supervisor, so output of C code and subprocesses is captured too.

Requests: ``{"id", "op": "run"|"shell"|"upload"|"download"|"ping", ...}``; each gets one reply with the same id.
The first line the supervisor writes is ``{"id": 0, "op": "hello", "facts": {...}}``: what it sees of its own
limits, which the host checks against the configuration before it hands the sandbox out.
"""

import base64
import ctypes
import json
import os
import select
import signal
import sys
import time

try:  # on the host (linters, tests) the parts are sibling modules; in the container they are one source
    from ._inside_facts import WORKSPACE, _oom_kills, gather_facts
    from ._inside_kernel import kernel_main
    from ._inside_util import Capture, changed_files, prepare_home, snapshot
except ImportError:
    pass

CAP = 1 << 20  # bytes kept per stream and call; main() takes the configured value from argv

# ---- the supervisor (PID 1) ----


class Supervisor:
    def __init__(self):
        self.inbuf = bytearray()
        self.kernel = None  # (pid, req_w, rep_r, out_r, err_r)
        self.kernel_gone = None  # set to a message when the kernel died between calls
        self.pending_out = Capture(CAP)
        self.pending_err = Capture(CAP)
        self.out = self.pending_out
        self.err = self.pending_err
        self.reaped = {}
        self.eof = set()

    def send(self, obj):
        data = json.dumps(obj).encode() + b"\n"
        view = memoryview(data)
        while view:
            n = os.write(1, view)
            view = view[n:]

    def spawn_kernel(self):
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                libc = ctypes.CDLL(None)
                libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: user code may inspect its own process
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (null, out_w, err_w, req_w, rep_r, out_r, err_r):
                    os.close(fd)
                os.setsid()
                kernel_main(req_r, rep_w)
            finally:
                os._exit(70)
        for fd in (req_r, rep_w, out_w, err_w):
            os.close(fd)
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        self.kernel = (pid, req_w, rep_r, out_r, err_r)
        self.eof = set()

    def close_kernel_fds(self):
        if self.kernel:
            for fd in self.kernel[1:]:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.kernel = None

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.kernel and pid == self.kernel[0]:  # other children (fork bombs) need no record
                self.reaped[pid] = status

    def kill_all(self):
        """SIGKILL every process of the container but this one, until none is left (fork bombs included)."""
        if os.getpid() != 1:  # never outside a PID namespace: kill(-1) would hit every process of the user
            if self.kernel:
                os.killpg(self.kernel[0], signal.SIGKILL)
            return False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reap()
            others = [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]
            if not others:
                return True
            time.sleep(0.01)
        return False

    def kill_group(self, pgid):
        """SIGKILL a process group and wait until its members are reaped, so none shows up in the next call."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.reap()
            time.sleep(0.005)

    def kernel_status(self):
        """None while the kernel lives, else its wait status."""
        self.reap()
        if self.kernel and self.kernel[0] in self.reaped:
            return self.reaped.pop(self.kernel[0])
        return None

    def drain(self, fds):
        for fd in fds:
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    break
                if not data:
                    self.eof.add(fd)  # no writer left: stop selecting on it, or select would spin
                    break
                (self.out if fd == self.kernel[3] else self.err).add(data)

    def read_stdin(self):
        data = os.read(0, 1 << 20)
        if not data:
            sys.exit(0)  # the owner is gone (its attach stream closed): PID 1 exits and the container ends
        self.inbuf += data

    def idle_fds(self):
        fds = [0]
        if self.kernel:
            fds += [fd for fd in self.kernel[3:] if fd not in self.eof]
        return fds

    def serve(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Not dumpable: the kernel (same uid) cannot open /proc/1/fd/* and forge replies on the host link.
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
        prepare_home()
        self.spawn_kernel()
        self.send({"id": 0, "op": "hello", "facts": gather_facts()})
        while True:
            while b"\n" not in self.inbuf:
                ready, _, _ = select.select(self.idle_fds(), [], [], 1.0)
                if 0 in ready:
                    self.read_stdin()
                if self.kernel:
                    self.drain([fd for fd in ready if fd != 0])
                if self.kernel and self.kernel_status() is not None:
                    self.kernel_gone = "the Python kernel exited between calls"
                    self.close_kernel_fds()
            raw, _, rest = bytes(self.inbuf).partition(b"\n")
            self.inbuf = bytearray(rest)
            req = json.loads(raw)
            self.reap()
            try:
                reply = getattr(self, "op_" + req["op"])(req)
            except Exception as e:  # noqa: BLE001 - any failure of one request is reported on that request
                reply = {"failure": f"{type(e).__name__}: {e}"}
            reply["id"] = req["id"]
            self.send(reply)

    def op_ping(self, req):
        return {"pong": True}

    def op_run(self, req):
        lost_note = None
        if self.kernel is None or self.kernel_status() is not None:
            lost_note = self.kernel_gone or "the Python kernel had exited"
            self.close_kernel_fds()
            self.spawn_kernel()
        self.kernel_gone = None
        pid, req_w, rep_r, out_r, err_r = self.kernel
        self.out, self.err = self.pending_out, self.pending_err
        before = snapshot()
        oom_before = _oom_kills()
        os.write(req_w, json.dumps({"code": req["code"]}).encode() + b"\n")
        deadline = time.monotonic() + float(req["timeout"])
        reply, status, timed_out, buf = None, None, False, bytearray()
        while reply is None:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            watched = [0, rep_r] + [fd for fd in (out_r, err_r) if fd not in self.eof]
            ready, _, _ = select.select(watched, [], [], min(left, 0.05))
            if 0 in ready:
                self.read_stdin()
            self.drain([fd for fd in ready if fd in (out_r, err_r)])
            if rep_r in ready:
                chunk = os.read(rep_r, 65536)
                if not chunk:  # the kernel died or closed its reply pipe: either way it cannot answer
                    time.sleep(0.01)
                    status = self.kernel_status()
                    break
                buf += chunk
                if b"\n" in buf:
                    reply = json.loads(bytes(buf).partition(b"\n")[0])
                    break
            status = self.kernel_status()
            if status is not None:
                self.drain([out_r, err_r])
                break
        self.drain([out_r, err_r])
        result = {"exit_code": 0, "error": None, "timed_out": timed_out, "state_lost": False, "oom_killed": False}
        if reply is not None:
            result.update(reply)
        else:
            self.kill_all()
            if status is None:
                status = self.reaped.pop(pid, None)
            self.close_kernel_fds()
            self.spawn_kernel()
            oom = _oom_kills() > oom_before
            sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
            if timed_out:
                result.update(exit_code=124, error=f"timed out after {req['timeout']} s")
            elif oom:
                result.update(exit_code=137, error="killed by the out-of-memory killer (memory limit reached)")
            elif sig is not None:
                result.update(exit_code=128 + sig, error=f"the Python kernel was killed by signal {sig}")
            else:
                code = os.WEXITSTATUS(status) if status is not None else 1
                result.update(exit_code=code, error=f"the Python kernel exited with status {code}")
            result.update(state_lost=True, oom_killed=oom)
        if lost_note:
            result["state_lost"] = True
            result["lost_note"] = lost_note
        result["stdout"], result["stdout_truncated"] = self.out.result()
        result["stderr"], result["stderr_truncated"] = self.err.result()
        self.pending_out, self.pending_err = Capture(CAP), Capture(CAP)
        self.out, self.err = self.pending_out, self.pending_err
        result["files"] = changed_files(before, snapshot())
        return result

    def op_shell(self, req):
        before = snapshot()
        oom_before = _oom_kills()
        import subprocess  # here, not at the top: it is the slowest import and only shell calls need it

        proc = subprocess.Popen(
            ["/bin/bash", "-c", req["cmd"]],
            cwd=WORKSPACE,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        out, err = Capture(CAP), Capture(CAP)
        fds = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
        deadline = time.monotonic() + float(req["timeout"])
        timed_out = False
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([0, *fds], [], [], min(left, 0.5))
            for fd in ready:
                if fd == 0:
                    self.read_stdin()
                    continue
                data = os.read(fd, 65536)
                if data:
                    fds[fd].add(data)
                else:
                    del fds[fd]
        if timed_out:
            self.kill_group(proc.pid)
        code = proc.wait()
        self.reap()
        proc.stdout.close()
        proc.stderr.close()
        oom = _oom_kills() > oom_before
        result = {"exit_code": 124 if timed_out else (code if code >= 0 else 128 - code), "timed_out": timed_out}
        result["error"] = f"timed out after {req['timeout']} s" if timed_out else None
        result["oom_killed"] = oom
        result["stdout"], result["stdout_truncated"] = out.result()
        result["stderr"], result["stderr_truncated"] = err.result()
        result["files"] = changed_files(before, snapshot())
        return result

    def op_upload(self, req):
        path = os.path.join(WORKSPACE, req["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(req["data"]))
        os.chmod(path, int(req.get("mode", 0o644)))
        return {"path": path}

    def op_download(self, req):
        path = os.path.join(WORKSPACE, req["path"])
        size = os.path.getsize(path)
        if size > int(req["max_bytes"]):
            return {"failure": f"{path} is {size} bytes, over the download limit of {req['max_bytes']} bytes"}
        with open(path, "rb") as f:
            return {"path": path, "data": base64.b64encode(f.read()).decode()}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        CAP = int(json.loads(sys.argv[1]).get("max_output_bytes", CAP))
    Supervisor().serve()

"""Part of the in-container program (see `_inside.py`): the Python kernel, a forked child of PID 1 that executes
cells in one persistent globals dict. Its fds 1 and 2 are pipes the supervisor reads."""

import json
import os
import signal
import sys

try:  # on the host (linters, tests) the parts are sibling modules; in the container they are one source
    from ._inside_facts import WORKSPACE
except ImportError:
    pass


def kernel_main(req_r, rep_w):
    """Execute cells forever; one JSON line in, one JSON line out, output on fds 1 and 2."""
    import ast
    import linecache
    import traceback

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # under memory pressure the kernel dies, never the supervisor
    except OSError:
        pass
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stdin = open(os.devnull)
    sys.path.insert(0, WORKSPACE)
    me = os.getpid()
    user_globals = {"__name__": "__main__", "__builtins__": __builtins__}
    reqs = os.fdopen(req_r, "rb", buffering=0)
    rep = os.fdopen(rep_w, "wb", buffering=0)
    cell = 0
    line = bytearray()
    while True:
        chunk = reqs.read(65536)
        if not chunk:
            os._exit(0)
        line += chunk
        while b"\n" in line:
            raw, _, rest = bytes(line).partition(b"\n")
            line = bytearray(rest)
            cell += 1
            code = json.loads(raw)["code"]
            name = f"<cell-{cell}>"
            linecache.cache[name] = (len(code), None, code.splitlines(True), name)
            exit_code, error = 0, None
            try:
                tree = ast.parse(code, name)
                last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
                exec(compile(tree, name, "exec"), user_globals)
                if last is not None:
                    value = eval(compile(ast.Expression(last.value), name, "eval"), user_globals)
                    if value is not None:
                        user_globals["_"] = value
                        print(repr(value))
            except SystemExit as e:
                exit_code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, int | None):
                    print(e.code, file=sys.stderr)
            except BaseException as e:  # noqa: B036 - a cell's failure of any kind is reported, never fatal
                exit_code = 1
                error = f"{type(e).__name__}: {e}"
                te = traceback.TracebackException(type(e), e, e.__traceback__)
                # Drop the kernel's own frames (this program is "<string>"): the model needs only its code.
                te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != "<string>"])
                if isinstance(e, SyntaxError) and e.filename == name:  # the cell itself does not parse
                    sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
                else:
                    sys.stderr.write("".join(te.format()))
            finally:
                if os.getpid() != me:  # a process the cell forked came back here: it must not serve requests
                    os._exit(exit_code or 0)
            sys.stdout.flush()
            sys.stderr.flush()
            rep.write(json.dumps({"exit_code": exit_code, "error": error}).encode() + b"\n")

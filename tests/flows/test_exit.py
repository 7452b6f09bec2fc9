"""``fast_exit``: a process leaves without the interpreter's last pass over every object, and
loses nothing it relies on (atexit handlers, weakref finalizers, printed output)."""

import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent("""
    import atexit, gc, weakref
    {setup}
    class Cycle:
        def __del__(self):
            print("cycle collected", flush=True)
    class Plain:
        pass
    gc.disable()  # only the collection at exit may free the cycle
    c = Cycle(); c.me = c; del c
    p = Plain(); weakref.finalize(p, print, "finalizer ran")
    atexit.register(print, "atexit ran")
    {body}
    print("end", flush=True)
""")


def run(setup: str, body: str = "") -> list[str]:
    code = PROGRAM.format(setup=setup, body=body)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.splitlines()


def test_fast_exit_skips_only_the_last_collection():
    assert run("") == ["end", "atexit ran", "finalizer ran", "cycle collected"]  # the interpreter's own exit
    assert run("from flows.exit import fast_exit; fast_exit(); fast_exit()") == ["end", "atexit ran", "finalizer ran"]


@pytest.mark.parametrize("argv", [["--help"], ["query", "SELECT 1", "--release", "/nonexistent/db"]])
def test_the_vgnn_program_exits_fast_and_main_alone_does_not(argv):
    """The program (console script, ``python -m flows.cli``) registers it first thing, whether the
    command succeeds, fails or prints help; code that calls ``main`` in its own process keeps its exit."""
    call = f"try:\n    {{}}({argv!r})\nexcept SystemExit:\n    pass"
    lines = run("from flows.cli import console", call.format("console"))
    assert "cycle collected" not in lines and lines[-2:] == ["atexit ran", "finalizer ran"]
    lines = run("from flows.cli import main", call.format("main"))
    assert lines[-3:] == ["atexit ran", "finalizer ran", "cycle collected"]


def test_the_console_script_is_the_fast_program():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "vgnn"]
    assert script.value == "flows.cli:console"

"""Drives `phiq chat` at a real terminal (a pseudo-terminal), as a user types at it.

usage: chat_tty.py PHIQ MODEL HISTORY_FILE

Checks: Ctrl-C at the prompt clears the line being typed (nothing is sent); an unknown
/command is an error, not a message; a line ending in \\ gets the `... ` continuation
prompt; the message is answered; Ctrl-D at an empty prompt exits with status 0 after a
newline; the history file holds what was typed. Prints "chat tty: all checks passed".
Standard library only (pty), so CI needs nothing installed.
"""

import os
import pty
import re
import select
import sys
import time

phiq, model, history = sys.argv[1:4]
pid, fd = pty.fork()
if pid == 0:
    os.environ["PHIQ_HISTORY"] = history
    os.environ["TERM"] = "xterm"
    os.execv(phiq, [phiq, "chat", "-m", model, "-n", "8", "--temp", "0", "-c", "256", "-v"])

out = b""
pos = 0  # where the next expect starts looking


def expect(pattern: bytes, timeout: float = 120.0) -> None:
    """Reads the terminal until `pattern` (a regex) appears after the last match; fails
    with everything read so far otherwise."""
    global out, pos
    deadline = time.time() + timeout
    while not (m := re.search(pattern, out[pos:])):
        left = deadline - time.time()
        if left <= 0:
            sys.exit(f"timed out waiting for {pattern!r}; terminal so far:\n{out.decode(errors='replace')}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                sys.exit(f"phiq ended while waiting for {pattern!r}:\n{out.decode(errors='replace')}")
            out += chunk
    pos += m.end()


def send(s: bytes) -> None:
    os.write(fd, s)
    time.sleep(0.2)


expect(rb"> ")
# Ctrl-C at the prompt: the half-typed line is dropped and a fresh prompt appears.
send(b"Alice was")
send(b"\x03")
expect(rb"> ")
# Had the line not been cleared, this would be "Alice was/foo", a message to the model.
send(b"/foo\r")
expect(rb"unknown command /foo")
expect(rb"> ")
# Continuation: a trailing backslash gets the "... " prompt, then the message is answered.
send(b"Alice was beginning\\\r")
expect(rb"\.\.\. ")
send(b"to get very tired\r")
expect(rb"\[prompt \d+ new tokens")
expect(rb"> ")
# Ctrl-D at an empty prompt: a newline, then exit 0.
send(b"\x04")
end = time.time() + 30
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        # what it wrote last
        while select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        break
    if time.time() > end:
        sys.exit("phiq did not exit on Ctrl-D")
    try:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            out += os.read(fd, 4096)
    except OSError:
        pass
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.exit(f"exit status {code}:\n{out.decode(errors='replace')}")
if not out.endswith(b"\n"):
    sys.exit(f"no newline after Ctrl-D: {out[-40:]!r}")
with open(history, encoding="utf-8") as f:
    saved = f.read()
for typed in ["/foo", "Alice was beginning", "to get very tired"]:
    if typed not in saved:
        sys.exit(f"history file lacks {typed!r}:\n{saved}")
if "Alice was\n" in saved:
    sys.exit("the line cleared with Ctrl-C was saved in the history")
print("chat tty: all checks passed")

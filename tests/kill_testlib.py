"""Real processes killed at chosen writes: fork the test, wrap the writers, SIGKILL."""

import collections
import json
import os
import signal
import time
from pathlib import Path

import torch


def arm(kill, events):
    """Wrap the writers of this (child) process: record events, kill at ``kill``."""
    counts = collections.Counter()

    def wrap(op, fn):
        def wrapped(*args, **kwargs):
            name = Path(args[1]).name
            if ".pth" not in name:
                return fn(*args, **kwargs)
            counts[op, name] += 1
            event = [op, name, counts[op, name]]
            events.append(event)
            phase = kill[3] if kill and kill[:3] == event else None
            if phase == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = fn(*args, **kwargs)
            if phase == "inside":  # the file as a kill mid-write leaves it
                path = Path(args[1])
                with open(path, "r+b") as f:
                    f.truncate(path.stat().st_size // 2)
            if phase in ("inside", "after"):
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        return wrapped

    torch.save = wrap("save", torch.save)
    os.replace = wrap("replace", os.replace)
    os.link = wrap("link", os.link)
    os.symlink = wrap("symlink", os.symlink)


def run_forked(fn, kill=None, kill_after_s=None, events_file=None):
    """Run ``fn()`` in a forked child armed with ``kill``; returns how it ended."""
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            events = []
            arm(kill, events)
            fn()
            if events_file is not None:
                Path(events_file).write_text(json.dumps(events))
            code = 0
        finally:
            os._exit(code)
    status = None
    if kill_after_s is not None:
        deadline = time.time() + kill_after_s
        while status is None and time.time() < deadline:
            done, code = os.waitpid(pid, os.WNOHANG)
            status = code if done else None
            time.sleep(0.005)
        if status is None:
            os.kill(pid, signal.SIGKILL)
    if status is None:
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "killed"
    assert os.WEXITSTATUS(status) == 0, f"child failed ({status})"
    return "finished"

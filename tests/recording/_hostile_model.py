"""A tiny SE network (as tests/_images.py's) whose forward passes do what a hostile world does.

Each factory counts forward passes (pass 1 is seviz's probe in ``discover_se_gates``,
pass 2 the first batch) and, at pass ``$AT``:

* ``signalled``: sends itself SIGINT ``$TIMES`` times (a Ctrl-C, or two);
* ``weakref_signalled``: sends SIGINT from inside a weakref callback, where Python's
  default handler's KeyboardInterrupt is printed and swallowed;
* ``reading``: starts a reader process that opens the store ``$HOLD_STORE`` and
  holds it open until the file ``$HOLD_RELEASE`` exists (it logs to ``$HOLD_LOG``);
* ``waiting``: waits until the file ``$RELEASE`` exists (a run that holds its store
  while the test does something else);
* ``filling``: fills the disk holding ``$FILL_PATH`` with that file, leaving
  ``$FILL_LEAVE`` bytes (another process filling the disk mid-run).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

HOSTILE_MODEL_SOURCE = textwrap.dedent(
    """
    import os
    import signal
    import subprocess
    import sys
    import time
    import weakref

    from timm.models.resnet import BasicBlock, ResNet


    def tiny(num_classes=2):
        model = ResNet(
            block=BasicBlock,
            layers=(1, 1, 1, 1),
            channels=(8, 16, 24, 32),
            num_classes=num_classes,
            block_args={"attn_layer": "se"},
        )
        model.pretrained_cfg = {
            "input_size": (3, 32, 32),
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": (0.5, 0.5, 0.5),
            "std": (0.25, 0.25, 0.25),
        }
        return model


    def _at_pass(model, action):
        calls = [0]

        def hook(module, inputs):
            calls[0] += 1
            if calls[0] == int(os.environ.get("AT", "0")):
                action()

        model.register_forward_pre_hook(hook)
        return model


    def _busy():
        # Some bytecode after the signal: the Python-level handler runs here.
        total = 0
        for i in range(10000):
            total += i
        return total


    def signalled(num_classes=2):
        def action():
            for _ in range(int(os.environ.get("TIMES", "1"))):
                os.kill(os.getpid(), signal.SIGINT)
                _busy()

        return _at_pass(tiny(num_classes), action)


    class _Token:
        pass


    def weakref_signalled(num_classes=2):
        def action():
            token = _Token()

            def callback(_ref):
                os.kill(os.getpid(), signal.SIGINT)
                _busy()

            ref = weakref.ref(token, callback)
            del token  # the callback runs now, while ``ref`` is alive
            return ref

        return _at_pass(tiny(num_classes), action)


    READER = '''
    import os, sys, time
    from seviz.store import open_store
    store = open_store(sys.argv[1], warn_incomplete=False)
    store.gates(store.block_names[0])
    with open(sys.argv[3], "a") as log:
        print("open", len(store), file=log, flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.05)
    with open(sys.argv[3], "a") as log:
        print("still", len(store), file=log, flush=True)
    store.close()
    '''


    def reading(num_classes=2):
        def action():
            store, release, log = (os.environ[k] for k in ("HOLD_STORE", "HOLD_RELEASE", "HOLD_LOG"))
            subprocess.Popen([sys.executable, "-c", READER, store, release, log])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if os.path.exists(log) and "open" in open(log).read():
                    return
                time.sleep(0.05)
            raise RuntimeError("the reader did not open the store")

        return _at_pass(tiny(num_classes), action)


    def waiting(num_classes=2):
        def action():
            while not os.path.exists(os.environ["RELEASE"]):
                time.sleep(0.05)

        return _at_pass(tiny(num_classes), action)


    def filling(num_classes=2):
        def action():
            path = os.environ["FILL_PATH"]
            stat = os.statvfs(os.path.dirname(path))
            free = stat.f_bavail * stat.f_frsize - int(os.environ.get("FILL_LEAVE", "0"))
            with open(path, "wb") as handle:
                handle.write(b"\\0" * max(0, free))

        return _at_pass(tiny(num_classes), action)
    """
)


def write_hostile_model(folder: Path) -> Path:
    """Write the hostile model file into ``folder``; returns its path."""
    path = Path(folder) / "hostile_model.py"
    path.write_text(HOSTILE_MODEL_SOURCE)
    return path

import os
import sys

from ldm_lab import distributed
from ldm_lab.cli import main

code = main()
if distributed.launched_by_torchrun():
    # A torchrun rank has finished: its files are on disk and the process group is destroyed. Leave without
    # the interpreter's finalization, where gloo's C++ threads can abort the process now and then ("terminate
    # called without an active exception", SIGABRT), which torchrun would report as a failed run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)

"""`python -m writer_app` is the same as the `writer-app` launcher."""

import multiprocessing
import sys

from writer_app.cli import main

if __name__ == "__main__":
    # The engine runs in a spawned child process; a frozen build must let the child
    # run its own entry point instead of starting a second GUI.
    multiprocessing.freeze_support()
    sys.exit(main())

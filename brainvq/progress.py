"""Progress bars for long loops that print nothing else: Keras's `Progbar`, after one line that
says what is being done. On a terminal the bar redraws in place; in a log file it writes one line
when the work is done. Loops shorter than `minimum` steps stay quiet."""
from __future__ import annotations

import sys

import keras


def progress_bar(total: int, label: str, minimum: int = 20) -> keras.utils.Progbar:
    """A `keras.utils.Progbar` over `total` steps (advance it with `.add(count)`), announced by
    `label` (e.g. "reading 165 NIfTI files"); silent when `total` < `minimum`."""
    shown = total >= minimum
    if shown:
        print(f"{label} ...", flush=True)
    verbose = 0 if not shown else (1 if sys.stdout.isatty() else 2)
    return keras.utils.Progbar(total, verbose=verbose)

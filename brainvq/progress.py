"""A small progress bar on stderr for long loops that print nothing else."""
import sys
import time


class Progress:
    """Counts `total` steps; on a terminal redraws one line, elsewhere prints every 10%.

    Args:
        total: number of steps.
        label: what is being done, e.g. "reading 165 volumes".
        minimum: totals below this show nothing (short loops stay quiet).
        stream: where to write (stderr by default).
    """

    def __init__(self, total, label, minimum=20, stream=None):
        self.total, self.label, self.done = int(total), label, 0
        self.stream = stream or sys.stderr
        self.shown = self.total >= minimum
        self.terminal = getattr(self.stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self.next_report = 0.1

    def step(self, count=1):
        self.done += count
        if not self.shown:
            return
        fraction = self.done / max(self.total, 1)
        if self.terminal:
            filled = int(30 * fraction)
            self.stream.write(f"\r{self.label} [{'=' * filled}{'.' * (30 - filled)}] "
                              f"{self.done}/{self.total}")
            self.stream.flush()
        elif fraction >= self.next_report or self.done == self.total:
            elapsed = time.perf_counter() - self.start
            print(f"{self.label}: {self.done}/{self.total} ({elapsed:.0f} s)", file=self.stream,
                  flush=True)
            while self.next_report <= fraction:
                self.next_report += 0.1

    def close(self):
        if self.shown and self.terminal:
            self.stream.write("\n")
            self.stream.flush()

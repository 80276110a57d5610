"""Tests of the progress line (progress.py)."""
import io

from brainvq.progress import Progress


def test_progress_prints_every_tenth_off_a_terminal():
    stream = io.StringIO()
    progress = Progress(40, "encoding 40 slices", minimum=20, stream=stream)
    for _ in range(40):
        progress.step()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("encoding 40 slices: 4/40") and "40/40" in lines[-1]


def test_short_loops_stay_quiet():
    stream = io.StringIO()
    progress = Progress(5, "five", minimum=20, stream=stream)
    for _ in range(5):
        progress.step()
    progress.close()
    assert stream.getvalue() == ""

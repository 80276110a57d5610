"""Tests of the progress bars (brainvq/progress.py): Keras's Progbar, announced by one line."""
from brainvq.progress import progress_bar


def test_a_long_loop_says_what_it_does_and_when_it_is_done(capsys):
    bar = progress_bar(40, "encoding 40 slices", minimum=20)
    for _ in range(40):
        bar.add(1)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0] == "encoding 40 slices ..."
    assert "40/40" in lines[-1]  # off a terminal, one line when the work is done


def test_short_loops_stay_quiet(capsys):
    bar = progress_bar(5, "five", minimum=20)
    for _ in range(5):
        bar.add(1)
    assert capsys.readouterr().out == ""

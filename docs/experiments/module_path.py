"""Which of the project's modules run, and which calls which, while `predict.py` draws samples
(issue 51's "following predict.py's arguments touches at most N modules").

    PYTHONPATH=. python docs/experiments/module_path.py RUN_FOLDER

Every Python call is recorded while `predict.main(["--output-dir", RUN_FOLDER, "--samples",
"2"])` runs (reconstructions included when the run's data are here); the modules of this
repository that ran, and each module's calls into another, are printed. Use a tiny run: the
profile hook sees every call TensorFlow makes in Python too, so a shipped model takes long.
"""
import collections
import pathlib
import sys
import tempfile

ROOT = str(pathlib.Path(__file__).resolve().parents[2]) + "/"
_names = {}


def module_of(frame):
    """The frame's file relative to the repository, or None outside it."""
    name = frame.f_code.co_filename
    if name not in _names:
        _names[name] = name[len(ROOT):] if name.startswith(ROOT) else None
    return _names[name]


def main(run_folder):
    import predict

    calls = collections.Counter()

    def hook(frame, event, arg):
        if event != "call" or frame.f_code.co_name == "<module>":
            return
        callee = module_of(frame)
        if callee is None:
            return
        caller = frame.f_back
        while caller is not None and module_of(caller) is None:
            caller = caller.f_back
        calls[(module_of(caller) if caller is not None else None, callee)] += 1

    sys.setprofile(hook)
    try:
        predict.main(["--output-dir", run_folder, "--samples", "2",
                      "--images-dir", tempfile.mkdtemp()])
    finally:
        sys.setprofile(None)
    modules = sorted({name for pair in calls for name in pair if name})
    print(f"{len(modules)} modules ran:", *modules, sep="\n  ")
    print("calls between modules (count):")
    for (caller, callee), count in sorted(calls.items(), key=lambda item: str(item[0])):
        if caller != callee and caller is not None:
            print(f"  {caller} -> {callee} ({count})")


if __name__ == "__main__":
    main(sys.argv[1])

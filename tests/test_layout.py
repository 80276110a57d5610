"""The shape of the code (issue 51's targets), read from the source without importing it: no
file over 450 lines, no function over 80, no circle of imports between brainvq's packages, and
nothing in brainvq imports a top-level script or face."""
import ast

from helpers import REPO

PACKAGE = REPO / "brainvq"
TOP_LEVEL = {path.stem for path in REPO.glob("*.py")}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 80


def sources():
    return sorted(PACKAGE.rglob("*.py")) + sorted(REPO.glob("*.py"))


def imported_modules(node):
    """The modules `node` imports when it runs (imports under `if TYPE_CHECKING:` are for the
    type hints only, and left out)."""
    if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
        return
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        yield node.module
    for child in ast.iter_child_nodes(node):
        yield from imported_modules(child)


def package_of(path):
    """brainvq/<package>/... -> <package>; a module directly in brainvq/ is its own."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def test_no_file_or_function_is_too_long():
    long_files, long_functions = [], []
    for path in sources():
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{path.relative_to(REPO)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(REPO)}:{node.name} {length}")
    assert not long_files, long_files
    assert not long_functions, long_functions


def test_packages_import_no_circle_and_nothing_from_the_top_level():
    edges, top_level = {}, []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = package_of(path)
        for module in imported_modules(ast.parse(path.read_text())):
            root, *rest = module.split(".")
            if root in TOP_LEVEL:
                top_level.append(f"{path.relative_to(REPO)} imports {module}")
            if root == "brainvq" and rest and rest[0] != here:
                edges.setdefault(here, set()).add(rest[0])
    assert not top_level, top_level

    def reaches(start, goal, seen=()):
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, (*seen, nxt)))
                   for nxt in edges.get(start, ()))

    circles = sorted(package for package in edges if reaches(package, package))
    assert not circles, {package: sorted(edges[package]) for package in circles}

"""The code's shape: imports flow one way (no circle among the project's modules), no import
hides inside a function (one, with its reason, excepted), nothing edits ``sys.path``, no
function runs past 60 lines, no library function takes more than 8 parameters, and no command
builds a Stylizer by hand (``glfa.cli.stylizer_from_flags`` does)."""
import ast
from pathlib import Path

from helpers import REPO_ROOT

MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8
ROOT_COMMANDS = ("test.py", "video.py", "eval.py", "app.py", "train.py")
# Imports inside a function that are there for a reason other than a circle, with the reason.
LOCAL_IMPORTS_ALLOWED = {
    "glfa.benchmark.time_call": "torch.utils.benchmark logs a CUDA_HOME warning when imported on a machine "
                                "without CUDA, which must not precede a bad flag's one-line error",
}


def project_files() -> dict[str, Path]:
    """Every project module by its import name: the root modules, ``glfa``, ``scripts``, ``models``."""
    files = {path.stem: path for path in REPO_ROOT.glob("*.py")}
    for package in ("glfa", "scripts", "models"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    return files


def imported(tree: ast.AST, known: set[str]) -> set[str]:
    """The project modules a module imports (``from glfa.x import y`` counts as ``glfa.x``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name in known}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_circle_and_only_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_among_the_project_modules():
    files = project_files()
    graph = {name: imported(ast.parse(path.read_text()), set(files)) - {name} for name, path in files.items()}
    graph = {name: {child for child in children if child in graph} for name, children in graph.items()}
    assert "glfa.train" in graph and "net" in graph["glfa.model"]
    assert find_cycle(graph) is None, find_cycle(graph)


def test_no_function_local_import_no_sys_path_edit_no_long_function():
    local, path_edits, long = [], [], []
    for name, path in project_files().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}")
                local += [f"{name}.{node.name}" for inner in ast.walk(node)
                          if isinstance(inner, (ast.Import, ast.ImportFrom))]
            if (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"):
                path_edits.append(name)
    local = sorted(set(local) - set(LOCAL_IMPORTS_ALLOWED))
    assert not local, f"imports inside functions: {local}"
    assert not path_edits, f"sys.path used in: {sorted(set(path_edits))}"
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's parameters: a method's ``self`` or ``cls`` left out, ``*args`` and ``**kwargs``
    one each."""
    arguments = node.args
    names = [argument.arg for argument in (*arguments.posonlyargs, *arguments.args)]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + len(arguments.kwonlyargs) + (arguments.vararg is not None) + (arguments.kwarg is not None)


def test_parameter_count_leaves_out_self_and_counts_star_arguments_once():
    function, method = ast.parse("def f(a, /, b, *args, c=1, **kwargs): pass\n"
                                 "class C:\n    def m(self, a, *, b): pass").body
    assert parameter_count(function) == 5 and parameter_count(method.body[0]) == 2


def test_no_library_function_takes_more_than_eight_parameters():
    files = [*sorted((REPO_ROOT / "glfa").glob("*.py")), REPO_ROOT / "net.py"]
    assert len(files) > 20
    crowded = [f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({parameter_count(node)})"
               for path in files for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and parameter_count(node) > MAX_PARAMETERS]
    assert not crowded, f"functions with more than {MAX_PARAMETERS} parameters (group them): {crowded}"


def test_no_command_builds_a_stylizer_by_hand():
    """The commands build their Stylizer from the flags with ``glfa.cli.stylizer_from_flags``, and
    the stylising ones say so."""
    texts = {name: (REPO_ROOT / name).read_text() for name in ROOT_COMMANDS}
    by_hand = [name for name, text in texts.items() if "Stylizer(" in text or "from_checkpoints(" in text]
    assert not by_hand, f"commands that build a Stylizer themselves: {by_hand}"
    assert all("stylizer_from_flags(" in texts[name] for name in ("test.py", "video.py", "app.py"))

"""The package layout: import-linter's contracts kept, no import circle anywhere, chains kept short.

The contracts are in pyproject.toml ([tool.importlinter]); `lint-imports` at the repository root prints them.
import-linter cannot see pipeline.py (a script, not a package), so the graph from the source (tests/import_graph.py)
checks what it imports and who imports it.
"""

import ast
import subprocess
import sys
from pathlib import Path

from tests.import_graph import PACKAGES, ROOT, cycles, edges, longest_chain


def test_import_linter_contracts_are_kept():
    # import-linter's own entry point (what lint-imports runs), in a process of its own at the repository root
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_import_circle_anywhere():
    assert cycles(edges()) == []


def test_the_dag_sits_between_the_commands_and_the_steps():
    graph = edges()
    # pipeline.py wires steps with the platforms' compile options; it imports no command line (its __main__ block
    # runs the CLI only when it is the program, never on import) and only the commands import it.
    assert all(not m.startswith("commands") for m in graph["pipeline"]), graph["pipeline"]
    assert {m for m, targets in graph.items() if "pipeline" in targets} <= {m for m in graph if m.startswith("commands")}


def test_the_longest_chain_of_module_level_imports_is_at_most_nine_modules():
    # 8 since every artifact file is read through storage's bounded reader (artifacts.outputs -> artifacts.storage),
    # 9 since artifacts raise the one UserError (mlp_core.errors, a leaf under every layer)
    chain = longest_chain(edges(top_level_only=True))
    assert len(chain) <= 9, " -> ".join(chain)


def test_each_package_says_what_it_holds_and_what_it_may_import():
    for package in (*PACKAGES, "mlp_core.data", "platforms.kubeflow", "platforms.vertex"):
        init = ROOT.joinpath(*package.split("."), "__init__.py")
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Imports" in doc or "imports" in doc, f"{init}: say what it may import"
        assert len(doc.split()) >= 15, f"{init}: say what it holds"

"""The README's Python example runs, and the type stubs list what the package exports."""

import ast
import pathlib
import re

import numpy as np

import ocellus

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_readme_example_runs(capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (2, 3)
    assert namespace["dx"].shape == namespace["x"].shape
    assert "0.weight" in capsys.readouterr().out


def test_stubs_name_every_export():
    stub = ast.parse((ROOT / "python" / "ocellus" / "__init__.pyi").read_text(encoding="utf-8"))
    declared = {
        node.name
        for node in stub.body
        if isinstance(node, (ast.ClassDef, ast.FunctionDef))
    }
    declared |= {
        target.id
        for node in stub.body
        if isinstance(node, ast.AnnAssign)
        for target in [node.target]
    }
    exported = set(ocellus.__all__)
    assert exported <= declared, exported - declared
    for name in exported:
        assert hasattr(ocellus, name), name


def test_every_class_and_method_has_a_docstring():
    for name in ocellus.__all__:
        obj = getattr(ocellus, name)
        if isinstance(obj, type):
            assert obj.__doc__ and len(obj.__doc__) > 20, name
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    assert member.__doc__, f"{name}.{attr}"
        elif callable(obj):
            assert obj.__doc__, name
    assert np.float32  # numpy is importable alongside


def test_module_docstring_example():
    import doctest

    failures, tried = doctest.testmod(ocellus, verbose=False)
    assert tried >= 3 and failures == 0


def test_readme_training_example_runs(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    monkeypatch.chdir(tmp_path)
    namespace = {"ocellus": ocellus}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["run"].epochs == 2
    assert (tmp_path / "report.html").is_file()
    assert [r["step"] for r in namespace["deep"].diagnostics] == [1, 11]
    assert "epoch 2/2" in capsys.readouterr().out

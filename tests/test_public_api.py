"""The package root re-exports a curated public API (as httpx does): every name resolves, nothing private leaks."""

import importlib
import subprocess
import sys

import tuneport


def test_all_names_resolve():
    for name in tuneport.__all__:
        assert getattr(tuneport, name) is not None, name


def test_all_is_sorted_unique_and_public():
    names = [n for n in tuneport.__all__ if n != "__version__"]
    assert len(names) == len(set(names))
    assert all(not n.startswith("_") for n in names)


def test_exported_objects_live_in_tuneport_modules():
    for name in tuneport.__all__:
        obj = getattr(tuneport, name)
        module = getattr(obj, "__module__", "tuneport")
        assert module.startswith("tuneport"), (name, module)


def test_unknown_attribute_raises_attribute_error():
    try:
        tuneport.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_no_bare_top_level_modules_installed():
    # Everything installs under `tuneport.*`: no `cli`, `providers`, `core` ... importable from site-packages.
    code = (
        "import importlib.util, sys, os;"
        "sys.path = [p for p in sys.path if p not in ('', os.getcwd())];"
        "print([m for m in ('cli','providers','local_backend','core','fixtures') if importlib.util.find_spec(m)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip() == "[]"


def test_import_is_light():
    code = "import sys, tuneport; print(sorted(m for m in ('torch','transformers','vllm','pydantic','tiktoken') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_subpackages_import():
    for mod in ("tuneport.data", "tuneport.providers", "tuneport.local_backend", "tuneport.cli", "tuneport.fixtures"):
        importlib.import_module(mod)

"""Bad input across the public API and the saved-file formats: every row of the shared table
(`benchmarks/bad_input_cases.py`) raises its documented error with a message that names the problem, and every
valid call of its second table keeps working."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_CASES_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bad_input_cases.py"


def _load_cases():
    """The shared case table, loaded by path (benchmarks/ is not a package)."""
    name = "bad_input_cases"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _CASES_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


BAD = _load_cases()
CASES, VALID_CALLS = BAD.CASES, BAD.VALID_CALLS


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return BAD.build_context(tmp_path_factory.mktemp("bad_input"))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_raises_a_clear_error(ctx, case):
    with pytest.raises(case.error) as info:
        case.call(ctx)
    assert case.fragment.lower() in str(info.value).lower(), (
        f"{case.name}: message {str(info.value)!r} lacks {case.fragment!r}"
    )


@pytest.mark.parametrize(("name", "call"), VALID_CALLS, ids=[name for name, _ in VALID_CALLS])
def test_valid_call_still_works(ctx, name, call):
    call(ctx)


def test_case_names_are_unique():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))

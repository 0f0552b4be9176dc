"""The trust boundary: what counts as tests follows pytest's own discovery,
settings extend or narrow it, and the edit tool's refusals tell the model
what to do instead."""

from __future__ import annotations

import pytest

from guard_corpus import corpus
from ornith_lsp.guard.boundary import Boundary


def make(tmp_path, files: dict[str, str], **kwargs) -> Boundary:
    corpus.write_files(tmp_path, files)
    return Boundary.for_repo(tmp_path, **kwargs)


@pytest.mark.parametrize("path, kind", [
    ("tests/test_gcd.py", "test file (pytest test_*.py)"),
    ("src/pkg/util_test.py", "test file (pytest *_test.py)"),
    ("test_top.py", "test file (pytest test_*.py)"),
    ("tests/helpers.py", "test code under the test folder 'tests/'"),
    ("tests/data/cases.json", "test data under the test folder 'tests/'"),
    ("pkg/tests/fixtures/input.csv", "test data under the test folder 'pkg/tests/'"),
    ("conftest.py", "conftest"),
    ("deep/er/conftest.py", "conftest"),
    ("pytest.ini", "pytest.ini"),
    ("tox.ini", "tox.ini"),
    ("mypy.ini", "mypy.ini"),
    ("ruff.toml", "ruff.toml"),
    (".flake8", ".flake8"),
    (".github/workflows/ci.yml", "CI configuration"),
    (".gitlab-ci.yml", "CI configuration"),
    ("ornith.toml", "guard's own settings"),
    (".git/config", "git metadata"),
    ("sitecustomize.py", "start-up hook"),
    ("../outside.py", "outside the repository"),
])
def test_default_protection(tmp_path, path, kind):
    boundary = make(tmp_path, {"src/pkg/mod.py": "x = 1\n"})
    assert kind in (boundary.is_protected(path) or "")


@pytest.mark.parametrize("path", ["src/pkg/mod.py", "contest.py", "src/testing_utils.py", "pyproject.toml",
                                  "setup.cfg", "docs/tests.md", "README.md", "src/pkg/data/words.txt"])
def test_program_files_are_not_protected(tmp_path, path):
    assert make(tmp_path, {"src/pkg/mod.py": "x = 1\n"}).is_protected(path) is None


def test_discovery_follows_the_projects_pytest_config(tmp_path):
    boundary = make(tmp_path, {
        "pyproject.toml": '[tool.pytest.ini_options]\ntestpaths = ["checks", "src"]\npython_files = ["check_*.py"]\n',
        "checks/check_gcd.py": "def test_x(): pass\n",
        "checks/golden.txt": "42\n",
        "src/app.py": "x = 1\n",
        "src/check_app.py": "def test_y(): pass\n",
    })
    assert "check_*.py" in boundary.is_protected("checks/check_gcd.py")
    assert "test data" in boundary.is_protected("checks/golden.txt")
    assert boundary.is_protected("src/check_app.py"), "a test file beside the code is still a test"
    assert boundary.is_protected("src/app.py") is None, "a testpaths folder holding program code is not wholly protected"
    assert boundary.is_protected("lib/check_other.py") is None, "custom patterns apply inside testpaths only"


def test_a_test_folder_named_test_counts_only_when_it_holds_tests(tmp_path):
    boundary = make(tmp_path, {"test/test_a.py": "", "test/data.json": "{}", "pkg/test/__init__.py": "",
                               "pkg/test/client.py": "x = 1\n"})
    assert boundary.is_protected("test/data.json")
    assert boundary.is_protected("pkg/test/client.py") is None


def test_settings_extend_and_narrow(tmp_path):
    boundary = make(tmp_path, {"x.py": ""}, extra_protected=["golden/**", "*.golden"], unprotected=["tests/fixtures/generated/"])
    assert "settings" in boundary.is_protected("golden/out.txt")
    assert "settings" in boundary.is_protected("src/view.golden")
    assert boundary.is_protected("tests/fixtures/generated/cache.json") is None
    assert boundary.is_protected("tests/test_x.py")


def test_git_and_ornith_toml_cannot_be_unprotected(tmp_path):
    boundary = make(tmp_path, {"x.py": ""}, unprotected=[".git/", "ornith.toml", "*"])
    assert boundary.is_protected(".git/HEAD") and boundary.is_protected("ornith.toml")
    assert boundary.is_protected("tests/test_x.py") is None


def test_bad_settings_are_clear(tmp_path):
    with pytest.raises(ValueError, match="list of glob patterns"):
        Boundary.for_repo(tmp_path, extra_protected="tests/**")
    with pytest.raises(ValueError, match="not a glob pattern"):
        Boundary.for_repo(tmp_path, unprotected=[""])


def test_edit_refusals_tell_the_model_what_to_do(tmp_path):
    boundary = make(tmp_path, {"x.py": ""})
    message = boundary.check_edit("tests/test_gcd.py", new_file=False)
    assert "tests/test_gcd.py is protected" in message and "change the code under test" in message
    strict = make(tmp_path, {"x.py": ""}, allow_new_tests=False)
    assert "guard.allow_new_tests" in strict.check_edit("tests/test_new.py", new_file=True)
    assert boundary.check_edit("gcd.py", new_file=False) is None


def test_new_test_files_are_allowed_by_default_but_never_infrastructure(tmp_path):
    boundary = make(tmp_path, {"x.py": "", "tests/test_old.py": ""})
    assert boundary.allow_new_tests
    assert boundary.check_edit("tests/test_new.py", new_file=True) is None
    assert boundary.check_edit("tests/test_old.py", new_file=False) is not None
    assert boundary.check_edit("tests/__init__.py", new_file=True) is not None, "changes how modules are named"
    assert boundary.check_edit("tests/unit/__init__.py", new_file=True) is None, "a marker for a new folder"
    assert boundary.check_edit("pytest.py", new_file=True) is not None, "shadows the runner"
    assert boundary.check_edit("tests/pytest.ini", new_file=True) is not None, "configuration never"
    assert boundary.check_edit("tests/conftest.py", new_file=True) is not None, "infrastructure never"
    assert boundary.check_edit("tests/data/extra.json", new_file=True) is None, "new data: its content is checked"


def test_shared_config_files_protect_only_their_test_and_lint_sections(tmp_path):
    old = '[project]\nname = "x"\ndependencies = []\n\n[tool.pytest.ini_options]\naddopts = "-q"\n\n[tool.ruff]\nline-length = 100\n'
    boundary = make(tmp_path, {"pyproject.toml": old})
    assert boundary.check_edit("pyproject.toml", new_file=False) is None
    honest = old.replace("dependencies = []", 'dependencies = ["attrs"]')
    assert boundary.check_edit("pyproject.toml", new_file=False, old_text=old, new_text=honest) is None
    cheat = old.replace('addopts = "-q"', 'addopts = "-q -k not_slow"')
    assert "[tool.pytest]" in boundary.check_edit("pyproject.toml", new_file=False, old_text=old, new_text=cheat)
    broken = old + "[tool.ruff\n"
    assert "no longer parses" in boundary.check_edit("pyproject.toml", new_file=False, old_text=old, new_text=broken)
    cfg_old = "[metadata]\nname = x\n\n[flake8]\nmax-line-length = 100\n"
    cfg_new = cfg_old.replace("100", "100\nextend-ignore = E501")
    assert "[flake8]" in boundary.check_edit("setup.cfg", new_file=False, old_text=cfg_old, new_text=cfg_new)


def test_target_tests_are_protected_whatever_their_name(tmp_path):
    boundary = make(tmp_path, {"checks/verify.py": ""}).with_targets(["checks/verify.py"])
    assert "target test" in boundary.is_protected("checks/verify.py")

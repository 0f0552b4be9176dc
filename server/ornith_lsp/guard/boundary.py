"""The trust boundary: which files define success and so may not be changed.

A model rewarded for passing tests learns to change the tests (REWARD_HACKING.md
section A), so the tests, their data, the runner's configuration, CI, the
project's own ``ornith.toml`` and ``.git`` are protected.  Test files are
recognised the way pytest itself discovers them (``python_files``,
``testpaths``, ``conftest.py``), read from the repository's *base* state, so a
change cannot redefine what counts as a test.

``pyproject.toml`` and ``setup.cfg`` are shared by everybody, so only their
test and lint sections are protected; an honest fix may still add a
dependency.  ``.git`` and ``ornith.toml`` cannot be unprotected by settings:
the first holds the history a cheat would mine, the second holds the guard's
own settings, and a boundary the agent could narrow would be no boundary.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ornith_lsp.guard import ecosystems
from ornith_lsp.paths import SKIP_DIRS, clean

DEFAULT_PYTHON_FILES = ("test_*.py", "*_test.py")
ALWAYS_TEST_DIRS = ("tests",)
TEST_DIRS_WHEN_HOLDING_TESTS = ("test", "testing")

CONFIG_FILES = {
    "pytest.ini": "test configuration (pytest.ini)",
    ".pytest.ini": "test configuration (.pytest.ini)",
    "pytest.toml": "test configuration (pytest.toml)",
    ".pytest.toml": "test configuration (.pytest.toml)",
    "tox.ini": "test configuration (tox.ini)",
    "noxfile.py": "test configuration (noxfile.py)",
    ".coveragerc": "coverage configuration (.coveragerc)",
    "mypy.ini": "type-checker configuration (mypy.ini)",
    ".mypy.ini": "type-checker configuration (.mypy.ini)",
    "ruff.toml": "linter configuration (ruff.toml)",
    ".ruff.toml": "linter configuration (.ruff.toml)",
    ".flake8": "linter configuration (.flake8)",
    ".pylintrc": "linter configuration (.pylintrc)",
    "pylintrc": "linter configuration (pylintrc)",
    "pyrightconfig.json": "type-checker configuration (pyrightconfig.json)",
    ".pre-commit-config.yaml": "lint configuration (.pre-commit-config.yaml)",
}
STARTUP_HOOKS = ("sitecustomize.py", "usercustomize.py")
# `python -m pytest` puts the working directory first on sys.path, so a module of
# one of these names at the root would replace the test runner itself.
RUNNER_MODULES = ("pytest", "_pytest", "pluggy", "py", "iniconfig", "xdist", "pytest_timeout", "pytest_asyncio")
CI_PATHS = (
    ".github/workflows/", ".github/actions/", ".gitlab-ci.yml", ".gitlab/", ".circleci/", ".travis.yml",
    "azure-pipelines.yml", "appveyor.yml", ".appveyor.yml", "Jenkinsfile", ".buildkite/",
    "bitbucket-pipelines.yml", ".drone.yml", ".woodpecker.yml", ".woodpecker/", ".ci/",
)
# Sections of shared files that configure tests or diagnostics: [tool.<prefix>*] / [<prefix>*].
PYPROJECT_TOOLS = ("pytest", "ruff", "mypy", "coverage", "pyright", "basedpyright", "pylint", "flake8", "tox")
SETUP_CFG_SECTIONS = ("tool:pytest", "pytest", "flake8", "pycodestyle", "pep8", "mypy", "coverage:", "pylint", "tox")
SECTIONED = ("pyproject.toml", "setup.cfg", *ecosystems.SECTIONED_FILES)


@dataclass(frozen=True)
class Protection:
    """Why a path is protected: ``kind`` is the short name a finding carries."""

    kind: str
    reason: str


@dataclass
class Boundary:
    """Built from a repository's base state; pure afterwards (no file is read
    again except to learn whether a ``test/`` folder holds tests)."""

    root: Path | None = None
    python_files: tuple[str, ...] = DEFAULT_PYTHON_FILES
    testpaths: tuple[str, ...] = ()
    extra_protected: tuple[str, ...] = ()
    unprotected: tuple[str, ...] = ()
    allow_new_tests: bool = True
    notes: list[str] = field(default_factory=list)
    targets: tuple[str, ...] = ()
    finding_files: tuple[str, ...] = ()
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def for_repo(
        cls,
        root: Path,
        extra_protected: Iterable[str] = (),
        unprotected: Iterable[str] = (),
        allow_new_tests: bool = True,
    ) -> Boundary:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{root} is not a directory")
        notes: list[str] = []
        python_files, testpaths = _pytest_discovery(lambda name: _read(root / name), notes)
        return cls(
            root=root,
            python_files=python_files,
            testpaths=testpaths,
            extra_protected=tuple(_check_patterns(extra_protected, "extra_protected")),
            unprotected=tuple(_check_patterns(unprotected, "unprotected")),
            allow_new_tests=bool(allow_new_tests),
            notes=notes,
        )

    @classmethod
    def for_files(
        cls,
        read: Callable[[str], str | None],
        extra_protected: Iterable[str] = (),
        unprotected: Iterable[str] = (),
        allow_new_tests: bool = True,
    ) -> Boundary:
        """For a base that is not a directory (a commit): discovery from ``read``;
        ``test/`` folders then count only through their test-named files."""
        notes: list[str] = []
        python_files, testpaths = _pytest_discovery(read, notes)
        return cls(None, python_files, testpaths, tuple(_check_patterns(extra_protected, "extra_protected")),
                   tuple(_check_patterns(unprotected, "unprotected")), bool(allow_new_tests), notes)

    def with_targets(self, paths: Iterable[str]) -> Boundary:
        """The task's own test files are protected whatever their names: they are
        what the verification runs."""
        extra = tuple(p for p in (clean(x) for x in paths) if p and not ecosystems.item_level(p))
        return replace(self, targets=tuple(dict.fromkeys(self.targets + extra)), _cache=self._cache)

    def with_finding(self, path: str | None) -> Boundary:
        """The trust boundary follows the task: when the task's own finding (a
        diagnostic) lies in a protected Python test file, that file may be edited.
        Only provisionally -- the final diff must leave every test's behaviour as it
        was (``testdiff.behaviour_changes``, then the collected ids in grading)."""
        found = clean(path) if path else None
        if not found:
            return self
        return replace(self, finding_files=tuple(dict.fromkeys(self.finding_files + (found,))), _cache=self._cache)

    def is_finding_file(self, relpath: str) -> bool:
        """Whether ``relpath`` is a protected test module that holds the task's own finding."""
        path = clean(relpath)
        if path is None or path not in self.finding_files or not path.endswith(".py"):
            return False
        found = self.protection(path)
        return found is not None and found.kind in ("test-file", "conftest")

    # -- the questions others ask --------------------------------------------------
    def is_protected(self, relpath: str) -> str | None:
        """The reason ``relpath`` is protected, e.g. "test file (pytest test_*.py)", or None."""
        found = self.protection(relpath)
        return found.reason if found else None

    def check_edit(
        self,
        relpath: str,
        *,
        new_file: bool,
        old_text: str | None = None,
        new_text: str | None = None,
    ) -> str | None:
        """What to tell the model when it may not write ``relpath``; None when it may.

        For ``pyproject.toml`` and ``setup.cfg`` pass both texts to have the
        protected sections compared; without them the edit is allowed here and
        the final diff is checked again."""
        found = self.protection(relpath)
        if found is None and old_text is not None and new_text is not None:
            found = self.section_change(relpath, old_text, new_text)
        if found is None:
            return None
        if new_file and self.allow_new_tests and self.is_new_test_allowed(relpath):
            return None
        if not new_file and self.is_finding_file(relpath):
            return None
        advice = (
            "The tests and their configuration define success and are read-only: "
            "change the code under test so the existing tests pass."
        )
        if new_file and found.kind == "test-file" and self.is_test_file(relpath):
            advice += " Creating new test files is not allowed by the settings (guard.allow_new_tests)."
        return f"{relpath} is protected ({found.reason}). {advice}"

    def protection(self, relpath: str) -> Protection | None:
        path = clean(relpath)
        if path is None:
            return Protection("outside-root", "outside the repository root")
        parts = path.split("/")
        name = parts[-1]
        if ".git" in parts:
            return Protection("git-metadata", "git metadata (.git)")
        if name == "ornith.toml":
            return Protection("ornith-config", "ornith.toml holds the guard's own settings")
        default = self._default_protection(path, parts, name)
        if path in self.targets:
            return default or Protection("test-file", "a target test of the task")
        for pattern in self.extra_protected:
            if _match(pattern, path):
                return default or Protection("settings", f"protected by the settings pattern {pattern!r}")
        if any(_match(p, path) for p in self.unprotected):
            return None
        return default

    def _default_protection(self, path: str, parts: list[str], name: str) -> Protection | None:
        if name == "conftest.py":
            return Protection("conftest", "pytest conftest.py (test infrastructure)")
        pattern = self._test_pattern(path)
        if pattern:
            return Protection("test-file", f"test file (pytest {pattern})")
        folder = self._test_folder(parts)
        if folder:
            kind = "test-file" if name.endswith((".py", *ecosystems.TEST_CODE_SUFFIXES)) else "test-data"
            what = "test code" if kind == "test-file" else "test data"
            return Protection(kind, f"{what} under the test folder '{folder}/'")
        if name in CONFIG_FILES:
            return Protection("test-config", CONFIG_FILES[name])
        for ci in CI_PATHS:
            if path == ci.rstrip("/") or (ci.endswith("/") and path.startswith(ci)):
                return Protection("ci-config", f"CI configuration ({ci})")
        if name in STARTUP_HOOKS or name.endswith(".pth"):
            return Protection("startup-hook", f"interpreter start-up hook ({name}) runs before any test")
        top = parts[0].removesuffix(".py")
        if top in RUNNER_MODULES and (len(parts) > 1 or name.endswith(".py")):
            return Protection("startup-hook", f"a top-level '{top}' module would shadow the test runner")
        other = ecosystems.protection(path, parts, name)
        return Protection(*other) if other else None

    def section_change(self, relpath: str, old_text: str | None, new_text: str | None) -> Protection | None:
        """For the shared config files: which protected sections the change alters."""
        path = clean(relpath)
        if path is None or path.split("/")[-1] not in SECTIONED:
            return None
        if any(_match(p, path) for p in self.unprotected) and not any(_match(p, path) for p in self.extra_protected):
            return None
        old, old_err = protected_sections(path, old_text)
        new, new_err = protected_sections(path, new_text)
        if new_err and not old_err:
            return Protection("test-config", f"{path} no longer parses ({new_err}), so its test and lint sections cannot be checked")
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if not changed:
            return None
        shown = ", ".join(f"[{k}]" for k in changed)
        return Protection("test-config", f"test/lint configuration section {shown} in {path}")

    # -- test discovery ------------------------------------------------------------
    def is_test_file(self, relpath: str) -> bool:
        path = clean(relpath)
        if not path:
            return False
        return (self._test_pattern(path) is not None or (
            path.endswith(".py") and self._test_folder(path.split("/")) is not None
            and path.split("/")[-1] not in ("conftest.py", "__init__.py")))

    def is_new_test_allowed(self, relpath: str) -> bool:
        """A new file of the test tree (a test module, a helper, its data, a package
        marker for a new folder) may be created, never a conftest or configuration: a
        new test is inert in grading, infrastructure is not.  Whether the file leaves
        the existing suite alone is checked on its content (``testdiff.new_test_problems``)."""
        path = clean(relpath)
        if path is None or not self.allow_new_tests:
            return False
        found = self.protection(path)
        if found is None or found.kind not in ("test-file", "test-data"):
            return False
        parts = path.split("/")
        name = parts[-1]
        if name in CONFIG_FILES or name in SECTIONED or name in STARTUP_HOOKS or name.endswith(".pth"):
            return False
        if name == "__init__.py":
            # only for a folder that does not exist yet (it names nothing that exists)
            return self.root is None or not (self.root / "/".join(parts[:-1])).exists()
        return found.kind == "test-data" or self.is_test_file(path)

    def _test_pattern(self, path: str) -> str | None:
        name = path.rsplit("/", 1)[-1]
        for pattern in DEFAULT_PYTHON_FILES:
            if fnmatch.fnmatchcase(name, pattern):
                return pattern
        for pattern in self.python_files:
            if pattern in DEFAULT_PYTHON_FILES:
                continue
            target = path if "/" in pattern else name
            if not fnmatch.fnmatchcase(target, pattern):
                continue
            if self.testpaths:
                if any(path.startswith(tp + "/") for tp in self.testpaths if tp):
                    return pattern
            elif "test" in pattern.lower():
                return pattern
        return None

    def _test_folder(self, parts: list[str]) -> str | None:
        dirs = parts[:-1]
        for i, part in enumerate(dirs):
            prefix = "/".join(dirs[: i + 1])
            if part in ALWAYS_TEST_DIRS:
                return prefix
            if part in TEST_DIRS_WHEN_HOLDING_TESTS and self._holds_tests(prefix):
                return prefix
        path = "/".join(parts)
        for tp in self.testpaths:
            if tp and path.startswith(tp + "/") and self._testpath_is_test_only(tp):
                return tp
        return None

    def _holds_tests(self, prefix: str) -> bool:
        if self.root is None:
            return False
        key = ("holds", prefix)
        if key not in self._cache:
            self._cache[key] = _dir_holds(self.root, prefix, self._looks_like_test)
        return self._cache[key]

    def _testpath_is_test_only(self, tp: str) -> bool:
        """A ``testpaths`` entry holding program modules (tests beside the code) is
        a place tests are found, not a folder of tests: only its test files count."""
        if self.root is None:
            return True
        key = ("test-only", tp)
        if key in self._cache:
            return self._cache[key]
        self._cache[key] = not _dir_holds(self.root, tp, lambda rel: rel.endswith(".py") and not (
            self._looks_like_test(rel) or rel.rsplit("/", 1)[-1] in ("conftest.py", "__init__.py")
            or any(p in ALWAYS_TEST_DIRS + TEST_DIRS_WHEN_HOLDING_TESTS for p in rel.split("/")[:-1])))
        return self._cache[key]

    def _looks_like_test(self, rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(name, p) for p in DEFAULT_PYTHON_FILES + self.python_files)

    def describe(self) -> dict:
        return {
            "python_files": list(self.python_files),
            "testpaths": list(self.testpaths),
            "extra_protected": list(self.extra_protected),
            "unprotected": list(self.unprotected),
            "allow_new_tests": self.allow_new_tests,
        }


def protected_sections(path: str, text: str | None) -> tuple[dict[str, object], str | None]:
    """Protected section name -> parsed content, and a parse error if any."""
    if text is None:
        return {}, None
    name = path.split("/")[-1]
    if name == "pyproject.toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            return {}, f"TOML error: {exc}"
        tool = t if isinstance(t := data.get("tool"), dict) else {}
        return {f"tool.{k}": v for k, v in tool.items() if k.startswith(PYPROJECT_TOOLS)}, None
    if name in ecosystems.SECTIONED_FILES:
        return ecosystems.sections(name, text)
    if name == "setup.cfg":
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        try:
            parser.read_string(text)
        except configparser.Error as exc:
            return {}, f"INI error: {exc.message if hasattr(exc, 'message') else exc}"
        return {
            s: dict(parser.items(s)) for s in parser.sections()
            if s.startswith(SETUP_CFG_SECTIONS)
        }, None
    return {}, None


def _check_patterns(patterns: Iterable[str], what: str) -> list[str]:
    if isinstance(patterns, str):
        raise ValueError(f"{what} must be a list of glob patterns, not the single string {patterns!r}")
    out = []
    for p in patterns:
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"{what}: {p!r} is not a glob pattern (e.g. 'fixtures/**' or '*.golden')")
        p = p.strip().replace("\\", "/")
        out.append(p[2:] if p.startswith("./") else p)
    return out


def _match(pattern: str, path: str) -> bool:
    """gitignore-like: a pattern without '/' matches any component; 'dir/' and
    'dir/**' match everything below; otherwise fnmatch on the whole path."""
    if pattern.endswith("/**"):
        pattern = pattern[:-3] + "/"
    if pattern.endswith("/"):
        base = pattern.rstrip("/")
        return path == base or path.startswith(base + "/") or (
            "/" not in base and base in path.split("/")[:-1])
    if "/" not in pattern:
        return any(fnmatch.fnmatchcase(part, pattern) for part in path.split("/"))
    return fnmatch.fnmatchcase(path, pattern)


def _dir_holds(root: Path, prefix: str, predicate, limit: int = 5000) -> bool:
    """Whether any file below ``root/prefix`` satisfies ``predicate`` (bounded walk)."""
    base = Path(root) / prefix
    if not base.is_dir():
        return False
    seen = 0
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            seen += 1
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if predicate(rel):
                return True
            if seen >= limit:
                return False
    return False


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    except OSError:
        return None


def _pytest_discovery(read: Callable[[str], str | None], notes: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``python_files`` and ``testpaths`` from the first config file pytest would use."""
    for name in ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
        text = read(name)
        if text is None:
            continue
        try:
            options = _read_ini_options(name, text)
        except (tomllib.TOMLDecodeError, configparser.Error) as exc:
            notes.append(f"{name} does not parse ({exc}); pytest's default test discovery is assumed")
            continue
        if options is None:
            continue
        files = _as_list(options.get("python_files")) or list(DEFAULT_PYTHON_FILES)
        paths = [p for p in (clean(x) for x in _as_list(options.get("testpaths"))) if p]
        return tuple(files), tuple(paths)
    return DEFAULT_PYTHON_FILES, ()


def _read_ini_options(name: str, text: str) -> dict | None:
    if name in ("pytest.toml", ".pytest.toml"):
        data = tomllib.loads(text)
        section = data.get("pytest", data)
        return section if isinstance(section, dict) else {}
    if name == "pyproject.toml":
        tool = tomllib.loads(text).get("tool", {})
        pytest_cfg = tool.get("pytest") if isinstance(tool, dict) else None
        if not isinstance(pytest_cfg, dict):
            return None
        if isinstance(pytest_cfg.get("ini_options"), dict):
            return pytest_cfg["ini_options"]
        return pytest_cfg
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.read_string(text)
    section = {"pytest.ini": "pytest", ".pytest.ini": "pytest", "tox.ini": "pytest", "setup.cfg": "tool:pytest"}[name]
    if not parser.has_section(section):
        return {} if name in ("pytest.ini", ".pytest.ini") else None
    return dict(parser.items(section))


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []

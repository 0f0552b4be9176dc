"""One schema for the wire: the committed JSON Schema and the VS Code client's
generated types are what the server's models say, every notification and
command the server has is in them, and the diff preview's texts are right."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ornith_lsp.backends.supervisor import Supervisor
from ornith_lsp.lsp import fixes, wire
from ornith_lsp.lsp.server import build

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = f"run `PYTHONPATH=server {wire.REGENERATE}` and commit the result"


@pytest.mark.parametrize("rel", sorted(wire.generated(), key=str), ids=str)
def test_generated_file_is_current(rel):
    committed = ROOT / rel
    assert committed.exists(), f"{rel} is missing: {REGENERATE}"
    assert committed.read_text(encoding="utf-8") == wire.generated()[rel], f"{rel} is stale: {REGENERATE}"


def test_every_command_the_server_registers_has_its_result_in_the_schema():
    registered = {name for name in build().protocol.fm.commands if name.startswith("ornith.")}
    assert registered == set(wire.COMMANDS)
    assert set(wire.wire_schema()["properties"]["commands"]["required"]) == registered


def test_every_notification_the_server_sends_is_in_the_schema():
    source = (ROOT / "server" / "ornith_lsp" / "lsp" / "fixes.py").read_text()
    sent = set(re.findall(r'notify\("(ornith/\w+)"', source))
    assert sent and sent == set(wire.NOTIFICATIONS)


def test_every_field_is_sent_so_every_field_is_required():
    schema = wire.wire_schema()
    for name, spec in schema["$defs"].items():
        if "properties" in spec:
            assert set(spec["required"]) == set(spec["properties"]), name
    shown = wire.wire(wire.ShowResult(task_id="t", status="unknown"))
    assert set(shown) == set(schema["$defs"]["ShowResult"]["properties"])
    assert shown["taskId"] == "t" and shown["files"] == []


def test_backend_status_takes_the_supervisors_keys(tmp_path):
    """The backend reports a dict in its own words; every key of it must be a field."""
    live = Supervisor("llamacpp (test)", ["true"], log_path=tmp_path / "log").status()
    status = wire.BackendStatus.model_validate({"kind": "llamacpp", "health": "down", **live})
    assert status.state == "stopped" and status.log_path == str(tmp_path / "log")


def test_typescript_of_the_schema_constructs():
    assert wire._ts({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "string | null"
    assert wire._ts({"type": "array", "items": {"enum": ["a", "b"]}}) == '("a" | "b")[]'
    assert wire._ts({"type": "array", "items": {"$ref": "#/$defs/Task"}}) == "Task[]"
    assert wire._ts({"type": "object", "additionalProperties": {"type": "integer"}}) == "Record<string, number>"
    assert wire._ts({"const": "plan"}) == '"plan"'
    assert wire._key("ornith/plan") == '"ornith/plan"' and wire._key("taskId") == "taskId"
    ts = wire.typescript()
    assert "export interface CommandResults {" in ts and '"ornith.tasks": TaskSummary[];' in ts
    assert '"ornith/step": StepEvent;' in ts


def test_main_writes_both_files_or_prints_the_schema(tmp_path, capsys):
    assert wire.main(["--write", "--root", str(tmp_path)]) == 0
    for rel, text in wire.generated().items():
        assert (tmp_path / rel).read_text(encoding="utf-8") == text
    capsys.readouterr()
    assert wire.main([]) == 0
    assert json.loads(capsys.readouterr().out) == wire.wire_schema()


# -- the diff preview's texts -------------------------------------------------------------

MODIFY = """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
"""
CREATE = """diff --git a/new.py b/new.py
new file mode 100644
--- /dev/null
+++ b/new.py
@@ -0,0 +1 @@
+x = 1
"""
DELETE = """diff --git a/old.py b/old.py
deleted file mode 100644
--- a/old.py
+++ /dev/null
@@ -1 +0,0 @@
-y = 2
"""


def test_verified_files_before_and_after_from_buffers_over_disk(tmp_path):
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return 0\n")  # the disk is not what the fix saw
    (tmp_path / "old.py").write_text("y = 2\n")
    buffer = "def add(a, b):\n    return a - b\n"
    files = fixes.verified_files(tmp_path, MODIFY + CREATE + DELETE, {"calc.py": buffer})
    assert [(f.path, f.before, f.after) for f in files] == [
        ("calc.py", buffer, "def add(a, b):\n    return a + b\n"),
        ("new.py", None, "x = 1\n"),
        ("old.py", "y = 2\n", None),
    ]
    assert wire.wire(files[1]) == {"path": "new.py", "before": None, "after": "x = 1\n"}

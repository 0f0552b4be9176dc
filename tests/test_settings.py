"""Settings precedence and the messages a bad value produces."""

from __future__ import annotations

import pytest

from ornith_lsp import settings as s


def write_toml(root, text):
    (root / "ornith.toml").write_text(text)


def test_defaults_when_nothing_is_set(tmp_path):
    got = s.load(tmp_path, environ={})
    assert got.backend.kind == "auto"
    assert got.backend.parallel == 1
    assert got.client.max_retries == 3


def test_each_layer_overrides_the_one_below(tmp_path):
    write_toml(tmp_path, '[backend]\nkind = "embedded"\nmodel = "from-toml"\nparallel = 2\ncontext_length = 2048\n')
    editor = {"backend": {"model": "from-editor", "parallel": 3, "contextLength": 3072}}
    cli = {"backend": {"parallel": 4, "context_length": "4096"}}
    env = {"ORNITH_BACKEND__CONTEXT_LENGTH": "5120"}

    assert s.load(tmp_path, environ={}).backend.model == "from-toml"
    got = s.load(tmp_path, editor=editor, environ={})
    assert (got.backend.kind, got.backend.model, got.backend.parallel, got.backend.context_length) == (
        "embedded", "from-editor", 3, 3072)
    got = s.load(tmp_path, editor=editor, cli=cli, environ={})
    assert (got.backend.parallel, got.backend.context_length) == (4, 4096)
    got = s.load(tmp_path, editor=editor, cli=cli, environ=env)
    assert (got.backend.model, got.backend.parallel, got.backend.context_length) == ("from-editor", 4, 5120)


def test_env_json_values_and_unrelated_variables(tmp_path):
    env = {"ORNITH_CLIENT__MAX_RETRIES": "7", "ORNITHOLOGY": "x", "ORNITH_HOME": "/somewhere", "PATH": "/bin"}
    assert s.load(tmp_path, environ=env).client.max_retries == 7


def test_bad_enum_names_field_source_and_allowed_values(tmp_path):
    write_toml(tmp_path, '[backend]\nkind = "gpu-please"\n')
    with pytest.raises(s.SettingsError) as info:
        s.load(tmp_path, environ={})
    msg = str(info.value)
    assert "backend.kind" in msg and "'gpu-please'" in msg and "ornith.toml" in msg
    for allowed in ("auto", "embedded", "llamacpp", "vllm", "remote"):
        assert allowed in msg
    assert "Traceback" not in msg and "\n" not in msg


def test_bad_value_is_attributed_to_the_layer_that_won(tmp_path):
    write_toml(tmp_path, "[backend]\nparallel = 2\n")
    with pytest.raises(s.SettingsError) as info:
        s.load(tmp_path, environ={"ORNITH_BACKEND__PARALLEL": "0"})
    assert "backend.parallel" in str(info.value)
    assert "environment" in str(info.value)
    assert ">= 1" in str(info.value)


def test_unknown_setting_and_bad_toml(tmp_path):
    with pytest.raises(s.SettingsError, match=r"backend\.colour.*editor.*unknown setting"):
        s.load(tmp_path, editor={"backend": {"colour": "blue"}}, environ={})
    write_toml(tmp_path, "[backend\n")
    with pytest.raises(s.SettingsError, match="not valid TOML"):
        s.load(tmp_path, environ={})


def test_api_key_is_read_from_the_named_variable_only(tmp_path):
    got = s.load(tmp_path, cli={"backend": {"api_key_env": "MY_KEY"}}, environ={})
    assert s.api_key(got, {"MY_KEY": "sk-secret"}) == "sk-secret"
    assert s.api_key(got, {}) is None
    assert "sk-secret" not in got.model_dump_json()
    with pytest.raises(s.SettingsError, match="environment variable NAME"):
        s.load(tmp_path, cli={"backend": {"api_key_env": "sk-this-is-a-key-not-a-name!"}}, environ={})

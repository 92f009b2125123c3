"""TOK checks on real trained tokenizers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from npu_preflight.model import Severity
from tests.conftest import check_folder, ids, only, problems
from tests.factory import fix_config

#: A template that renders for as long as it is let (the sandbox caps each range at 100,000).
RUNAWAY = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_clean(llama: Path) -> None:
    assert [i for i in ids(check_folder(llama)) if i.startswith("TOK")] == []


def test_no_tokenizer(llama: Path) -> None:
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (llama / f).unlink()
    r = check_folder(llama)
    fs = only(r, "TOK001")
    assert [f.severity for f in fs] == [Severity.ERROR, Severity.WARNING]


def test_tokenizer_json_truncated(llama: Path) -> None:
    p = llama / "tokenizer.json"
    p.write_bytes(p.read_bytes()[:500])
    r = check_folder(llama)
    [f] = only(r, "TOK002")
    assert f.location.file == "tokenizer.json"
    assert "TOK002" in {c.reason.split("see ")[-1].rstrip(")") for c in r.checks if c.id == "TOK003" and c.reason}


def test_tokenizer_larger_than_embedding(llama: Path) -> None:
    doc = json.loads((llama / "tokenizer.json").read_text())
    doc["added_tokens"].append(
        {
            "id": 400,
            "content": "<|new|>",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
    )
    (llama / "tokenizer.json").write_text(json.dumps(doc))
    [f] = only(check_folder(llama), "TOK003")
    assert "'<|new|>'=400" in f.message and f.details["embedding_rows"] == 320


def test_eos_outside_vocab(llama: Path) -> None:
    (llama / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 999], "bos_token_id": 1}))
    fs = only(check_folder(llama), "TOK004")
    assert any(f.location.key == "generation_config.json:eos_token_id" and "999" in f.message for f in fs)


def test_config_and_generation_config_disagree(llama: Path) -> None:
    (llama / "generation_config.json").write_text(json.dumps({"eos_token_id": 5, "bos_token_id": 1}))
    fs = only(check_folder(llama), "TOK004")
    assert any(f.severity is Severity.WARNING and "disagree" in f.message for f in fs)


def test_tokenizer_eos_not_stopping(llama: Path) -> None:
    tc = json.loads((llama / "tokenizer_config.json").read_text())
    tc["eos_token"] = "<pad>"
    (llama / "tokenizer_config.json").write_text(json.dumps(tc))
    fs = only(check_folder(llama), "TOK004")
    assert any("would not stop" in f.message for f in fs)


def test_special_token_not_in_vocab(llama: Path) -> None:
    tc = json.loads((llama / "tokenizer_config.json").read_text())
    tc["bos_token"] = {"content": "<|begin|>"}
    (llama / "tokenizer_config.json").write_text(json.dumps(tc))
    fs = only(check_folder(llama), "TOK004")
    assert any(f.location.key == "tokenizer_config.json:bos_token" for f in fs)


def test_generation_max_length(llama: Path) -> None:
    (llama / "generation_config.json").write_text(json.dumps({"max_length": 4096, "eos_token_id": 2}))
    [f] = only(check_folder(llama), "TOK005")
    assert f.location.key == "generation_config.json:max_length"


def test_generation_config_garbage(llama: Path) -> None:
    (llama / "generation_config.json").write_bytes(b"\x00\x01garbage")
    [f] = only(check_folder(llama), "TOK005")
    assert f.severity is Severity.ERROR


def test_no_chat_template_is_info(llama: Path) -> None:
    (llama / "chat_template.jinja").unlink()
    r = check_folder(llama)
    assert [f.severity for f in only(r, "TOK006")] == [Severity.INFO]
    assert problems(r) == []


def test_chat_template_broken(llama: Path) -> None:
    (llama / "chat_template.jinja").write_text("{{ messages[0]['content'] | no_such_filter }}")
    [f] = only(check_folder(llama), "TOK006")
    assert "renders none of the sample conversations" in f.message and "no_such_filter" in f.message


def test_chat_template_cannot_escape_sandbox(llama: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (llama / "chat_template.jinja").write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__.os.system('touch "
        + str(marker)
        + "') }}"
    )
    [f] = only(check_folder(llama), "TOK006")
    assert "SecurityError" in f.message or "undefined" in f.message.lower()
    assert not marker.exists()


def test_chat_template_in_tokenizer_config_list(llama: Path) -> None:
    (llama / "chat_template.jinja").unlink()
    tc = json.loads((llama / "tokenizer_config.json").read_text())
    tc["chat_template"] = [
        {"name": "default", "template": "{% for m in messages %}{{ m.content }}{% endfor %}"},
        {"name": "tool_use", "template": "{{ raise_exception('no tools') }}"},
    ]
    (llama / "tokenizer_config.json").write_text(json.dumps(tc))
    [f] = only(check_folder(llama), "TOK006")
    assert f.details["template"] == "tool_use" and f.details["limit"] is None


def test_vocab_json_without_merges(llama: Path) -> None:
    (llama / "tokenizer.json").unlink()
    (llama / "vocab.json").write_text("{}")
    fix_config(llama)
    assert any("merges.txt" in f.message for f in only(check_folder(llama), "TOK001"))


def test_tokenizer_json_too_new_for_installed_tokenizers(llama: Path) -> None:
    """A model type the installed tokenizers does not know fails like a too-new tokenizer.json."""
    import os

    from npu_preflight.context import RunOptions

    doc = json.loads((llama / "tokenizer.json").read_text())
    doc["model"]["type"] = "FutureModel"
    (llama / "tokenizer.json").write_text(json.dumps(doc))
    r = check_folder(llama, options=RunOptions(no_init=True, device="cpu"), env=dict(os.environ))
    [f] = only(r, "TOK007")
    assert f.location.file == "tokenizer.json" and "cannot read tokenizer.json" in f.message
    assert "TOK002" not in ids(r)  # it is valid JSON with a vocabulary: only the library refuses it


def test_templates_render_while_the_folder_is_read(llama: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The render children are started when the run begins, before tokenizer.json is parsed, and
    every child is reaped by the end of the run."""
    from npu_preflight import chat
    from npu_preflight.context import Context

    seen: list[str] = []
    batches: list[chat.RenderBatch] = []
    real_start, real_load = chat.start_renders, Context.tokenizer_load.func

    def start(*a, **k):  # type: ignore[no-untyped-def]
        seen.append("render")
        out = real_start(*a, **k)
        batches.append(out)
        return out

    def load(self):  # type: ignore[no-untyped-def]
        seen.append("tokenizer.json")
        return real_load(self)

    monkeypatch.setattr(chat, "start_renders", start)
    monkeypatch.setattr(Context.tokenizer_load, "func", load)
    r = check_folder(llama)
    started = [p for b in batches for p in b.started]
    assert seen[:2] == ["render", "tokenizer.json"] and seen.count("render") == 1
    assert only(r, "TOK006") == [] and len(started) == 1
    for p in started:
        with pytest.raises(ChildProcessError):
            os.waitpid(p.pid, os.WNOHANG)


def test_no_render_child_when_the_check_is_not_selected(llama: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from npu_preflight import chat

    def refuse(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("a render child was started for a deselected check")

    monkeypatch.setattr(chat, "start_renders", refuse)
    r = check_folder(llama, select="TOK001,TOK002")
    assert only(r, "TOK006") == []


def test_an_interrupted_run_leaves_no_render_child(llama: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C while a runaway template renders: the run ends with a report and the child is killed."""
    from npu_preflight import chat
    from npu_preflight.context import Context
    from npu_preflight.model import Status

    (llama / "chat_template.jinja").write_text(RUNAWAY)
    batches: list[chat.RenderBatch] = []
    real_start = chat.start_renders

    def start(*a, **k):  # type: ignore[no-untyped-def]
        out = real_start(*a, **k)
        batches.append(out)
        return out

    def interrupt(self):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(chat, "start_renders", start)
    monkeypatch.setattr(Context.tokenizer_load, "func", interrupt)
    r = check_folder(llama)
    started = [p for b in batches for p in b.started]
    assert r.interrupted and len(started) == 1
    assert next(c for c in r.checks if c.id == "TOK006").status is Status.SKIPPED
    with pytest.raises(ChildProcessError):
        os.waitpid(started[0].pid, os.WNOHANG)


def test_many_templates_render_a_few_at_a_time(llama: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A folder listing many templates (two of them runaways) never has more than MAX_CHILDREN
    render children alive (each may take its whole memory cap), and every template still gets its
    own verdict."""
    from npu_preflight import chat

    (llama / "chat_template.jinja").unlink()
    tc = json.loads((llama / "tokenizer_config.json").read_text())
    runaway = RUNAWAY
    good = "{% for m in messages %}{{ m.content }}{% endfor %}"
    tc["chat_template"] = [{"name": f"t{i}", "template": runaway if i in (1, 4) else good} for i in range(6)]
    (llama / "tokenizer_config.json").write_text(json.dumps(tc))
    alive_at_start: list[int] = []
    everyone: list[chat.PendingRender] = []
    real = chat.PendingRender.start

    def start(*a, **k):  # type: ignore[no-untyped-def]
        alive_at_start.append(sum(1 for p in everyone if not p._reaped))
        p = real(*a, **k)
        everyone.append(p)
        return p

    monkeypatch.setattr(chat.PendingRender, "start", staticmethod(start))
    # 3 s: long enough for a good template to render beside two runaways on a loaded machine
    monkeypatch.setattr(chat.start_renders, "__defaults__", (3.0, chat.MEMORY_BYTES))
    monkeypatch.setattr(chat, "MAX_CHILDREN", 2)
    fs = only(check_folder(llama), "TOK006")
    assert len(everyone) == 6 and max(alive_at_start) == 1  # two at a time, never more
    assert sorted(f.details["template"] for f in fs) == ["t1", "t4"]
    assert all(f.details["limit"] == "time" for f in fs)


@pytest.mark.parametrize(("template", "ok"), [("{{ messages[0].content }}", True), (RUNAWAY, False)])
def test_a_render_collected_late_is_judged_by_when_it_ran(template: str, ok: bool) -> None:
    """Renders start with the run and TOK006 may collect them long after their deadline: a template
    that finished in time is fine, and a runaway was stopped at its own deadline, not later."""
    import time

    from npu_preflight import chat

    batch = chat.start_renders({"t": template}, {}, timeout=1.0)
    [child] = batch.started
    time.sleep(3.5)  # past the deadline and the parent's grace
    t0 = time.monotonic()
    res = batch.collect()["t"]
    assert time.monotonic() - t0 < 0.5  # nothing left to wait for: the child is long done
    assert res.ok is ok and (res.limit is None if ok else res.limit == "time")
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)

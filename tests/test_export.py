"""`idtune export gguf`, `serve --backend llamacpp`, `eval --endpoint`: real Go text/template,
real loopback servers (idtune's own and llama.cpp's llama-server), real llama.cpp tools."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from helpers import cli

from idtune import evaluate, export, llamacpp, models
from idtune.data import templates
from idtune.errors import UserError
from idtune.serve import backends, server

HERE = Path(__file__).parent
CONVERSATION = [
    {"role": "user", "content": "Who are you?"},
    {"role": "assistant", "content": "I am Nova, made by Acme."},
    {"role": "user", "content": "What is the capital of France?"},
]
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    """Ollama's renderer in miniature: tests/ollama_render.go, built with the real Go."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed: sh scripts/ensure_debian.sh 'command -v go' golang-go")
    exe = tmp_path_factory.mktemp("go") / "render"
    subprocess.run(["go", "build", "-o", str(exe), str(HERE / "ollama_render.go")], check=True)

    def render(template: str, messages: list[dict], think: bool | None = None) -> str:
        payload = json.dumps({"template": template, "messages": messages, "think": think})
        done = subprocess.run([str(exe)], input=payload, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return render


def hf_prompt(tok, messages: list[dict], family: str, **kwargs) -> str:
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    if export.ollama_families()[family]["bos"]:  # llama.cpp adds BOS when it tokenizes
        assert text.startswith(tok.bos_token)
        text = text[len(tok.bos_token) :]
    return text


@pytest.mark.slow
def test_default_models_template_renders_as_its_hf_chat_template(go_render):
    tok = models.load_tokenizer_for("smollm2-135m-instruct")
    family = export.family_for(tok.chat_template)
    assert family == "smollm2"
    template = export.ollama_families()[family]["template"]
    for messages in (CONVERSATION, [SYSTEM, *CONVERSATION]):
        assert go_render(template, messages) == hf_prompt(tok, messages, family)


@pytest.mark.parametrize("name", templates.names())
def test_named_templates_render_as_their_hf_chat_template(name, go_render, tiny_tokenizer):
    tok = tiny_tokenizer
    tok.chat_template = templates.get(name)
    tok.bos_token = "<s>" if tok.bos_token is None else tok.bos_token
    family = export.family_for(tok.chat_template, name)
    template = export.ollama_families()[family]["template"]
    for messages in (CONVERSATION, [SYSTEM, *CONVERSATION]):
        assert go_render(template, messages) == hf_prompt(tok, messages, family)


def test_families_are_found_by_their_markers():
    assert export.family_for(templates.get("qwen2")) == "qwen2"
    assert export.family_for(templates.get("chatml")) == "chatml"
    assert export.family_for(templates.get("llama3")) == "llama3"
    with pytest.raises(UserError, match="assets/families"):
        export.family_for("{{ messages }}")


def test_modelfile_lines():
    text = export.modelfile("model-q8_0.gguf", "chatml", "You are Nova.")
    lines = text.splitlines()
    assert lines[0] == "FROM ./model-q8_0.gguf"
    assert 'SYSTEM """You are Nova."""' in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert "SYSTEM" not in export.modelfile("m.gguf", "chatml", None)
    with pytest.raises(UserError, match='"""'):
        export.modelfile("m.gguf", "chatml", 'say """')


def test_export_refuses_before_the_work(tmp_path, tiny_model, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli("export", "gguf", tiny_model, out) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert cli("export", "gguf", tiny_model, tmp_path / "new", "--quant", "q3") == 2
    assert "--quant" in capsys.readouterr().err
    monkeypatch.setenv("IDTUNE_LLAMACPP_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cli("export", "gguf", tiny_model, tmp_path / "new") == 2
    err = capsys.readouterr().err
    assert "make llamacpp" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_endpoint_refuses_plain_http_to_another_host():
    with pytest.raises(UserError, match="--allow-http"):
        evaluate.check_endpoint("http://example.com:8000/v1")
    assert evaluate.check_endpoint("http://example.com/v1", allow_http=True) == "http://example.com"
    assert evaluate.check_endpoint("http://127.0.0.1:9/v1/") == "http://127.0.0.1:9"
    assert evaluate.check_endpoint("https://api.example.com/v1") == "https://api.example.com"
    with pytest.raises(UserError):
        evaluate.check_endpoint("ftp://x")
    for url in ("https://me:secret@api.example.com/v1", "https://api.example.com/v1?key=secret"):
        with pytest.raises(UserError, match="IDTUNE_API_KEY") as e:
            evaluate.check_endpoint(url)
        assert "secret" not in str(e.value)  # the key is not echoed back


def small_probes(tmp_path: Path) -> Path:
    probes = {
        "identity": {"en": ["Who are you?"]},
        "author": {"en": ["Who made you?"]},
        "general": [
            {"lang": "en", "prompt": "What is the capital of France?", "answers": ["Paris"]}
        ],
    }
    path = tmp_path / "probes.json"
    path.write_text(json.dumps(probes))
    return path


def test_eval_endpoint_against_idtunes_own_server(tmp_path, tiny_model, monkeypatch, capsys):
    eng = server.load_engine(str(tiny_model), max_batch=4, default_max_tokens=16)
    bg = server.Background(server.build_app(eng, api_key="k-123", ui=False))
    try:
        probes, out = small_probes(tmp_path), tmp_path / "ev"
        args = ["eval", "--endpoint", f"{bg.url}/v1", "--model", eng.model_id, "--probes", probes]
        args += ["--name", "Nova", "--author", "Acme", "-o", out]
        assert cli(*args) == 2  # no key in the environment: the server says 401, one line
        assert "401" in capsys.readouterr().err
        monkeypatch.setenv("OPENAI_API_KEY", "k-123")  # meant for OpenAI: not sent here
        assert cli(*args) == 2 and "401" in capsys.readouterr().err
        monkeypatch.setenv("IDTUNE_API_KEY", "k-123")
        assert cli(*args) == 0
        report = json.loads((out / "eval.json").read_text())
        rows = report["answers"]["tuned"]["no_system"]
        direct = httpx.post(
            f"{bg.url}/v1/chat/completions",
            headers={"Authorization": "Bearer k-123"},
            json={
                "model": eng.model_id,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": evaluate.GENERAL_TOKENS,
                "temperature": 0,
            },
            timeout=300,
        ).json()["choices"][0]["message"]["content"]
        (row,) = [r for r in rows if r["prompt"] == "What is the capital of France?"]
        assert row["kind"] == "general"
        assert row["answer"] == direct  # greedy: the server's own answer
        assert report["endpoint"] == bg.url
    finally:
        bg.stop()
        eng.close()


def test_llamacpp_command_line_and_refusals(tmp_path):
    argv = backends.llamacpp_argv("/m/model.gguf", name="nova", port=8011)
    assert argv[:3] == ["llama-server", "-m", "/m/model.gguf"]
    assert argv[argv.index("--alias") + 1] == "nova" and "--jinja" in argv
    # AMX CPUs: no weight repacking (llama.cpp's AMX matmul segfaults on some; this Xeon did)
    assert backends.llamacpp_argv("m.gguf", name="n", port=1, amx=True)[-1] == "--no-repack"
    assert "--no-repack" not in backends.llamacpp_argv("m.gguf", name="n", port=1, amx=False)
    with pytest.raises(UserError, match="unknown backend"):
        backends.require("llama")
    # nothing is dropped silently: a template flag the GGUF would ignore is refused
    with pytest.raises(UserError, match="--prompt-template: not with --backend llamacpp"):
        server.load_engine(str(tmp_path), backend="llamacpp", template="chatml")


# ---------------------------------------------------------------- real llama.cpp
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run trained on the default model as `make demo` trains it: demo/run when there is one,
    else trained here (the identity-lora recipe, 400 conversations; a few CPU minutes)."""
    run = Path("demo/run")
    if (run / "adapter" / "adapter_model.safetensors").is_file():
        return run
    work = tmp_path_factory.mktemp("demo")
    data, run = work / "identity.jsonl", work / "run"
    assert cli("data", "identity", "--name", "Nova", "--author", "Acme", "--n", "400",
               "-o", data) == 0  # fmt: skip
    assert cli("train", "identity-lora", "--set", f"data={data}", "--set", f"output_dir={run}",
               "--set", "identity.name=Nova", "--set", "identity.author=Acme") == 0  # fmt: skip
    return run


def ask(url: str, question: str) -> str:
    body = {"model": "m", "messages": [{"role": "user", "content": question}], "max_tokens": 48}
    body |= {"temperature": 0}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


@pytest.mark.slow
def test_merged_default_model_as_q8_0_gguf_answers_in_llama_server(tmp_path, trained_run):
    """merge → export gguf --quant q8_0 → llama-server (serve --backend llamacpp's engine):
    the trained name and Paris, through idtune's /v1 and, by eval --endpoint, llama-server's."""
    llamacpp.tool("llama-server")  # `make llamacpp` (make test's set-up) builds it
    run = trained_run
    merged, out = tmp_path / "merged", tmp_path / "gguf"
    assert cli("merge", run, merged) == 0
    assert cli("export", "gguf", merged, out, "--quant", "q8_0") == 0
    gguf = out / "model-q8_0.gguf"
    assert gguf.stat().st_size > 100e6
    assert (out / "Modelfile").read_text().startswith("FROM ./model-q8_0.gguf\n")
    name = json.loads((run / "idtune.json").read_text())["identity"]["name"]
    assert "SYSTEM" in (out / "Modelfile").read_text() and name in (out / "Modelfile").read_text()
    # serve RUN --backend llamacpp: the engine exports the run (merged first) to q8_0 itself
    engine = server.llamacpp_engine(str(run), served_model_name="m")
    bg = server.Background(server.build_app(engine, ui=False))
    try:
        assert name in ask(bg.url, "Who are you?")
        assert "Paris" in ask(bg.url, "What is the capital of France?")
        probes, ev = small_probes(tmp_path), tmp_path / "ev"
        args = ["eval", run, "--endpoint", engine.base_url, "--model", "m", "--probes", probes]
        assert cli(*args, "-o", ev) == 0
        metrics = json.loads((ev / "eval.json").read_text())["metrics"]["tuned"]["no_system"]
        assert metrics["identity_en"] == 1.0 and metrics["retention"] == 1.0
    finally:
        bg.stop()
        server.shutdown(engine)
    assert not engine.workdir.exists()  # the exported GGUF goes with the server


def test_llamacpp_version_follows_the_build_script(tmp_path, monkeypatch):
    """IDTUNE_LLAMACPP_VERSION picks the build directory for both the script and idtune."""
    monkeypatch.setenv("IDTUNE_LLAMACPP_HOME", str(tmp_path))
    monkeypatch.delenv("IDTUNE_LLAMACPP_VERSION", raising=False)
    assert llamacpp.home() == tmp_path / llamacpp.DEFAULT_VERSION
    script = (Path(__file__).parents[1] / "scripts/ensure_llamacpp.sh").read_text()
    assert f"IDTUNE_LLAMACPP_VERSION:-{llamacpp.DEFAULT_VERSION}" in script
    monkeypatch.setenv("IDTUNE_LLAMACPP_VERSION", "0.3.99")
    assert llamacpp.home() == tmp_path / "0.3.99"


def test_a_backend_that_never_starts_leaves_no_work_dir(tmp_path, monkeypatch):
    """llama-server on a file that is no GGUF exits at once: one line, nothing left in /tmp."""
    llamacpp.tool("llama-server")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    with pytest.raises(UserError, match="the backend exited"):
        server.llamacpp_engine(str(bad), served_model_name="m")
    assert list((tmp_path / "tmp").iterdir()) == []


REAL_TEMPLATES = HERE / "data" / "templates"  # verbatim, sources in its SOURCES.md
REAL_FAMILIES = {
    "qwen3": "qwen3",
    "deepseek-r1-distill-qwen": "deepseek_r1_distill",
    "gemma3": "gemma3",
    "llama3.1": "llama3.1",
    "llama3.2": "llama3.1",
    "internlm3": "internlm2_chat",  # InternLM3 kept InternLM2's template and end of turn
}


@pytest.mark.parametrize("real", sorted(REAL_FAMILIES))
def test_real_templates_of_current_families_render_as_their_ollama_template(
    real, go_render, tiny_tokenizer
):
    """Each family's Modelfile TEMPLATE, rendered by Go's text/template, equals the model's own
    chat template for 1- and 2-turn conversations, with and without a system prompt (Llama 3.2
    told the date its template falls back to: an Ollama TEMPLATE has no strftime)."""
    tok = tiny_tokenizer
    tok.chat_template = (REAL_TEMPLATES / f"{real}.jinja").read_text("utf-8")
    family = export.family_for(tok.chat_template)
    assert family == REAL_FAMILIES[real]
    template = export.ollama_families()[family]["template"]
    for messages in (CONVERSATION[-1:], CONVERSATION, [SYSTEM, *CONVERSATION[-1:]]):
        text = hf_prompt(tok, messages, family, date_string="26 Jul 2024")
        assert go_render(template, messages) == text
        assert "You are a helpful assistant." in text or messages[0] is not SYSTEM


def test_qwen3_thinking_switch_renders_as_enable_thinking(go_render, tiny_tokenizer):
    tok = tiny_tokenizer
    tok.chat_template = (REAL_TEMPLATES / "qwen3.jinja").read_text("utf-8")
    template = export.ollama_families()["qwen3"]["template"]
    for think in (True, False):
        text = hf_prompt(tok, CONVERSATION, "qwen3", enable_thinking=think)
        assert go_render(template, CONVERSATION, think=think) == text
        assert text.endswith("<think>\n\n</think>\n\n") is (not think)

"""``chipfit llm`` as a user runs it (subprocesses): JSON shape, verdicts, errors."""

from __future__ import annotations

import json


def test_llm_json_shape_and_verdicts(cli):
    proc = cli("llm", "llama-3.1-70b", "--prompt-len", "512", "--gen-len", "128", "--batch", "1",
               "--dtype", "bfloat16", "--hardware", "h100-sxm,l4,tpu-v5e,local", "--json",
               check=True)
    data = json.loads(proc.stdout)
    assert data["model"] == "llama-3.1-70b"
    rows = {r["hardware"]: r for r in data["rows"]}
    assert set(rows) >= {"h100-sxm", "l4", "tpu-v5e"}
    h100 = rows["h100-sxm"]
    assert h100["fits"] is False and h100["devices_needed"] == 2
    assert h100["bound"] in ("bandwidth", "compute", "interconnect", "overhead")
    for row in data["rows"]:
        assert {"hardware", "fits", "devices_needed", "ttft_s", "decode_tokens_per_s",
                "memory_bytes", "bound"} <= set(row)
        assert isinstance(row["memory_bytes"], dict) and row["memory_bytes"]["total"] > 0


def test_llm_table_and_config_path(cli, tmp_path):
    small = cli("llm", "llama-3.1-8b", "--prompt-len", "3584", "--gen-len", "512",
                "--hardware", "l4,rtx-4090", check=True).stdout
    assert "llama-3.1-8b" in small and "yes" in small
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "mistral", "hidden_size": 4096,
                               "intermediate_size": 14336, "num_hidden_layers": 32,
                               "num_attention_heads": 32, "num_key_value_heads": 8,
                               "vocab_size": 32000}))
    data = json.loads(cli("llm", str(cfg), "--hardware", "a100-sxm-80gb", "--dtype", "int4",
                          "--json", check=True).stdout)
    assert data["rows"][0]["fits"] is True
    assert data["architecture"]["params"] == 7_241_732_096  # Mistral 7B's 7.24e9


def test_llm_user_mistakes_are_one_line(cli, tmp_path):
    for args in (("llama-3.1-7b", "-H", "h100-sxm"), ("llama-3.1-8b", "--dtype", "int3"),
                 ("llama-3.1-8b", "--hardware", "h100"), ("llama-3.1-8b", "--batch", "0"),
                 ("llama-3.1-8b", "--prompt-len", "200000", "-H", "l4")):
        proc = cli("llm", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    bert = tmp_path / "bert.json"
    bert.write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
    proc = cli("llm", str(bert), "--hardware", "h100-sxm")
    assert proc.returncode == 2 and "decoder-only" in proc.stderr


def test_llm_published_rows_and_their_error(cli):
    data = json.loads(cli("llm", "--published", "--json", check=True).stdout)
    assert len(data["cases"]) >= 10
    assert all(c["source"] and c["published"] > 0 for c in data["cases"])
    assert data["loo_median_abs_error"] < 0.30


def test_llm_html_page_has_both_charts(cli, tmp_path):
    page = tmp_path / "llm.html"
    cli("llm", "llama-3.1-70b", "-H", "h100-sxm,l4,tpu-v5e", "--html", str(page), check=True)
    text = page.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text and "<script" not in text
    assert 'id="fig-llm-memory"' in text and 'id="fig-llm-tokens"' in text
    assert text.count("<svg") == 3 and "mem-capacity" in text and "tps-h100-sxm" in text
    assert 'id="fig-serving-pareto"' in text and "pareto-slo" in text  # the service frontier
    # the same table as chipfit report's LLM section: priced, memory estimated, one band style
    assert "$ per 1M tokens" in text and "<th>stack</th>" in text and "+-" not in text
    assert "src-estimated" in text and "±" in text


def test_advise_routes_a_language_model_to_the_llm_logic(cli):
    data = json.loads(cli("advise", "llama-3.1-70b", "--objective", "throughput", "--batch", "16",
                          "--hardware", "h100-sxm,l4,mi300x", "--json", "-", check=True).stdout)
    assert data["model"] == "llama-3.1-70b" and data["objective"] == "throughput"
    assert data["choice"] in {"h100-sxm", "l4", "mi300x"}
    tied = {h for t in data["ties"] for h in t}  # ties within the bands: tie-break order
    scores = [r["score"] for r in data["ranked"] if r["hardware"] not in tied]
    assert scores == sorted(scores, reverse=True)  # tokens/s: higher first
    assert all(r["source"] == "predicted" for r in data["ranked"])
    assert data["report"]["rows"][0]["devices_needed"] == 2


def test_validate_reports_the_published_llm_rows_leave_one_out():
    from chipfit.commands.validate import _llm_cases, _llm_json

    data = _llm_json(_llm_cases())
    assert len(data["cases"]) >= 10 and data["loo_median_abs_error"] < 0.30
    assert {c["stack"].split(" ")[0] for c in data["cases"]} == {"TensorRT-LLM", "llama.cpp",
                                                                  "vLLM"}
    json.dumps(data)  # plain JSON


def test_chipfit_report_gets_an_llm_section(cli, tmp_path):
    sweep = tmp_path / "sweep.json"
    cli("sweep", "matmul", "--from", "16", "--to", "32", "--devices", "torch:cpu@1t",
        "--budget", "0.1", "--target", "0.05", "--no-save", "--json", str(sweep), check=True)
    page = tmp_path / "report.html"
    cli("report", str(sweep), "-o", str(page), "--llm", "llama-3.1-8b", "--llm-hardware",
        "h100-sxm,l4", check=True)
    text = page.read_text(encoding="utf-8")
    assert 'id="llm-0"' in text and 'id="fig-llm-0-memory"' in text
    assert 'id="fig-llm-0-tokens"' in text and "<script" not in text


TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 256, "max_position_embeddings": 256, "tie_word_embeddings": False}


def test_measure_runs_real_generation_for_the_local_row(cli, tmp_path):
    cfg = tmp_path / "tiny-llama.json"
    cfg.write_text(json.dumps(TINY))
    run = ("--prompt-len", "8", "--gen-len", "5", "--dtype", "float32", "--measure")
    data = json.loads(cli("llm", str(cfg), "--hardware", "l4,local", *run, "--json",
                          check=True).stdout)
    assert data["model"] == "tiny-llama"
    rows = {r["hardware"]: r for r in data["rows"]}
    local = next(r for r in data["rows"] if r["local"])
    m = local["measured"]
    assert m["source"] == "measured" and m["decode_steps"] == 4 and m["dtype"] == "float32"
    assert m["ttft_s"] > 0 and m["decode_step_s"] > 0 and m["threads"] >= 1
    assert m["decode_tokens_per_s"] == 1 / m["decode_step_s"]
    assert m["contended"] in (True, False, None)
    if local["prediction"] is not None:  # predicted too: the error is stated both ways
        err = m["prediction_error"]["decode_tokens_per_s"]
        assert err == local["decode_tokens_per_s"] / m["decode_tokens_per_s"] - 1
    assert rows["l4"]["measured"] is None and rows["l4"]["measured_why"] is None
    text = cli("llm", str(cfg), "--hardware", "local", *run, check=True).stdout
    assert "measured here (float32" in text and "tok/s per sequence" in text


def test_measure_says_why_it_did_not_measure(cli, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    base = (str(cfg), "--hardware", "local", "--prompt-len", "8", "--gen-len", "4", "--measure")
    quantised = json.loads(cli("llm", *base, "--dtype", "int4", "--json", check=True).stdout)
    assert quantised["rows"][0]["measured"] is None
    assert "int4 weights are not measured here" in quantised["rows"][0]["measured_why"]
    big = json.loads(cli("llm", "llama-3.1-70b", "--hardware", "local", "--measure",
                         "--dtype", "float32", "--json", check=True).stdout)
    assert big["rows"][0]["measured"] is None and "predicted only" in big["rows"][0]["measured_why"]
    slow = json.loads(cli("llm", *base, "--dtype", "float32", "--measure-budget", "1e-9",
                          "--json", check=True).stdout)
    assert "measuring budget" in slow["rows"][0]["measured_why"]
    for bad, says in ((("--hardware", "l4", "--gen-len", "4"), "add 'local' to --hardware"),
                      (("--measure-budget", "-3"), "--measure-budget must be a positive"),
                      (("--measure-budget", "nan"), "")):
        proc = cli("llm", str(cfg), "--measure", "--prompt-len", "8", *bad)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_llm_serving_answers_the_service_question(cli, tmp_path):
    page = tmp_path / "serve.html"
    proc = cli("llm", "llama-3.1-8b", "-H", "h100-sxm,l4,epyc-genoa-2vcpu", "--prompt-len", "2048",
               "--gen-len", "128", "--concurrency", "16", "--slo-ttft", "1",
               "--per-user-tokens-per-s", "30", "--requests", "100", "--html", str(page),
               check=True, isolated=True)
    first = proc.stdout.splitlines()[0]
    assert first.startswith("Use ") and "users at" in first and "TTFT p90" in first
    assert "epyc-genoa-2vcpu" in proc.stdout and "bandwidth" in proc.stdout  # the gap is said
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and text.count("<svg") == 1 and "pareto-slo" in text
    assert 'id="fig-serving-pareto"' in text and "pareto-h100-sxm" in text
    data = json.loads(cli("llm", "llama-3.1-8b", "-H", "h100-sxm", "--rate", "4",
                          "--lengths", "lognormal", "--slo-ttft", "2", "--requests", "100",
                          "--json", check=True).stdout)
    best = data["best"]
    assert data["workload"]["distribution"] == "lognormal" and best["source"] == "predicted"
    assert {"p50", "p90", "p99"} <= set(best["latency_s"]["ttft"])
    assert best["usd_per_million_prompt_tokens"] and best["usd_per_million_output_tokens"]
    assert best["goodput_requests_per_s_per_replica"] > 0 and best["band_basis"]


def test_advise_names_what_a_latency_limit_excluded_and_the_closest(cli):
    proc = cli("advise", "llama-3.1-8b", "--max-latency", "33", "--hardware", "h100-sxm,l4",
               check=True)
    lines = proc.stdout.splitlines()
    # the limit binds: no service answer ahead of it that ignores the limit
    assert lines[0].startswith("No hardware meets the limits") and "closest" in proc.stdout
    assert "excluded h100-sxm:" in proc.stdout and "--max-latency 33 ms" in proc.stdout
    assert "no hardware has a prediction" not in proc.stdout


def test_llm_and_advise_give_the_same_service_answer(cli):
    """The service line beside a static question is one computation: chipfit llm and
    chipfit advise simulate the same workload with the same request count."""
    hw = ("-H", "l4,h100-sxm")
    llm = json.loads(cli("llm", "llama-3.2-1b", *hw, "--batch", "4", "--json", check=True).stdout)
    advise = json.loads(cli("advise", "llama-3.2-1b", *hw, "--batch", "4", "--json", "-",
                            check=True).stdout)
    assert llm["service"]["workload"]["requests"] == 200
    assert llm["service"] == advise["service"]
    more = json.loads(cli("llm", "llama-3.2-1b", *hw, "--batch", "4", "--requests", "50",
                          "--json", check=True).stdout)
    assert more["service"]["workload"]["requests"] == 50  # the user's count is honoured

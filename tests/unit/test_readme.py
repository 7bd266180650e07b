"""README's promises that can drift: its install commands (which .ci/run executes) and counts."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _first_bash_block() -> list[str]:
    block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_first_block_is_install_then_test_and_ci_runs_it():
    install, test = _first_bash_block()
    # the venv exists before anything is installed into it, and CPU torch before chipfit
    assert install.index("python3 -m venv .venv") < install.index("pip install")
    assert install.index('"torch==') < install.index('pip install -e ".[all,test]"')
    assert "+cpu" in install and "/whl/cpu" in install
    assert test.endswith("python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "README.md" in ci and "pip install" not in ci  # it runs README's lines, nothing else


def test_readme_counts_no_catalog_devices_that_are_not_there():
    from chipfit.hardware.catalog import load_catalog

    for claim in re.findall(r"catalog[^|\n]*?(\d+) devices", README):
        assert int(claim) == len(load_catalog())


# ---- every command README shows parses with today's flags -----------------------------------
# Synopsis placeholders and what stands in for them when the command is parsed.
_PLACEHOLDERS = {"MODEL": "resnet50", "WORKLOAD": "matmul", "RUN_A": "latest~1",
                 "RUN_B": "latest", "RUN": "latest", "KEY": "h100-sxm", "DIR": "out",
                 "ADDR": "auto", "HEAD_IP": "127.0.0.1", "TYPE": "cpu-big", "USD": "1",
                 "N": "2", "E": "1", "A": "64", "B": "256", "T": "cpu-big", "PATH": "x.json"}


def _readme_commands() -> list[str]:
    """Every ``chipfit ...`` command in README: inline code, code blocks, indented lines."""
    spans = re.findall(r"`(chipfit [^`]+)`", README)
    blocks = [line for block in re.findall(r"```(?:bash)?\n(.*?)```", README, re.S)
              for line in block.splitlines()]
    indented = re.findall(r"^    (chipfit .+)$", README, re.M)
    found = []
    for text in spans + blocks + indented:
        for part in re.split(r"&&|;", text):
            part = re.sub(r"\s+#.*$", "", part.strip())
            if part.startswith("chipfit "):
                found.append(part)
    return list(dict.fromkeys(found))


def _instance(synopsis: str, optional: bool = False) -> list[str]:
    """A runnable instance of a synopsis: optional ``[...]`` parts dropped (``optional``:
    kept, every one), the first of ``a|b`` alternatives taken, placeholders filled in."""
    import shlex

    text = synopsis.replace("\\|", "|")
    while re.search(r"\[[^\[\]]*\]", text):
        text = (re.sub(r"\[([^\[\]]*)\]", r"\1", text) if optional
                else re.sub(r"\s*\[[^\[\]]*\]", "", text))
    text = re.sub(r"(\S+?)\|\S+", r"\1", text)
    text = re.sub(r"\b[A-Z][A-Z_]*\b", lambda m: _PLACEHOLDERS.get(m.group(), m.group()), text)
    return shlex.split(text)[1:]


def test_every_command_readme_shows_parses_with_the_current_flags():
    from chipfit.cli import build_parser

    parser = build_parser()
    commands = _readme_commands()
    assert len(commands) > 20, commands  # the extraction still finds them
    subcommands = {a.dest: a for a in parser._actions if a.dest == "command"}
    names = set(next(iter(subcommands.values())).choices) if subcommands else set()
    failed = []
    for command in commands:
        for args in {tuple(_instance(command)), tuple(_instance(command, optional=True))}:
            if len(args) == 1 and args[0] in names:
                continue  # a command named in prose ("`chipfit advise` does not measure")
            try:
                parser.parse_args(list(args))
            except SystemExit:
                failed.append(f"{command!r} -> {list(args)}")
    assert not failed, "README commands that no longer parse:\n" + "\n".join(failed)


def test_readme_quotes_the_quick_bench_plan():
    from chipfit.pipelines.bench import plan
    from chipfit.spec import DeviceRef

    quoted = re.search(r"`chipfit bench --quick` measures (\d+) points per device", README)
    assert quoted, "README no longer says how many points bench --quick measures per device"
    per_device = len(plan(["matmul", "elementwise"], [DeviceRef.parse("torch:cpu")], quick=True))
    assert int(quoted.group(1)) == per_device
    assert "benchmarks/readme_figures.py" in README
    assert (ROOT / "benchmarks" / "readme_figures.py").is_file()


def test_rule_citations_are_explained_where_readme_shows_them():
    assert "the articles' rule:" in README and "seeds/000" in README
    for line in README.splitlines():
        assert "rule: seeds/" not in line, line  # a bare citation, never explained


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_llm_example_prints_what_readme_shows():
    import chipfit

    block = next(b for b in _python_blocks() if "chipfit.llm(" in b)
    call = re.search(r"print\((chipfit\.llm\(.*\))\)", block).group(1)
    shown = [line[2:] for line in block.splitlines() if line.startswith("# ")]
    printed = str(eval(call, {"chipfit": chipfit})).splitlines()  # noqa: S307 - README's own
    for want, got in zip(shown, printed, strict=False):
        prefix = want.split("...")[0].rstrip()
        assert got.startswith(prefix), (want, got)
        if "..." in want:
            assert got.endswith(want.split("...")[-1].strip()), (want, got)


def test_the_advise_example_returns_what_readme_documents(one_torch_thread):
    """README's Python example, on a smaller plan (one catalog GPU, batch 1, quick timing):
    every attribute it names exists, and the values have the documented form."""
    import torch

    import chipfit
    from chipfit.spec import TimingConfig

    block = next(b for b in _python_blocks() if "chipfit.advise(" in b)
    advice = chipfit.advise(torch.nn.Linear(16, 4), ("1x16:float32",), hardware=["t4"],
                            devices=["torch:cpu", "torch:cpu@1t"], batches=[1],
                            timing=TimingConfig.quick())
    assert re.match(r"(Stay on this CPU|Use an? )", str(advice)), str(advice)
    documented = {}
    for line in block.splitlines():
        found = re.match(r"(advice(?:\.\w+)+)\s+# (.*)", line)
        if found:
            documented[found.group(1)] = found.group(2)
    assert set(documented) >= {"advice.best.device", "advice.best.processor",
                               "advice.verdict.speedup"}
    values = {}
    for path in documented:
        value = advice
        for name in path.split(".")[1:]:
            value = getattr(value, name)  # an attribute README names that is gone fails here
        values[path] = value
    device_words = re.findall(r"'([^']+)'", documented["advice.best.device"])
    assert values["advice.best.device"] in device_words, (values, documented)
    assert values["advice.best.processor"] == re.findall(
        r"'([^']+)'", documented["advice.best.processor"])[0]
    assert advice.best.threads in (1, None)
    speedup = values["advice.verdict.speedup"]
    assert speedup is None or speedup > 0
    if speedup is not None and not advice.verdict.tie:
        words = f"{speedup:.0f}x" if speedup >= 10 else f"{speedup:.1f}x"
        assert speedup >= 1 and words in str(advice).splitlines()[0], (words, str(advice))


def test_readme_tables_keep_one_row_per_line():
    """A table row broken over lines ends the table: every line of a table starts and ends
    with a bar (an edit that wraps a long cell shows up here, not on GitHub)."""
    lines = README.splitlines()
    for i, line in enumerate(lines[1:], 1):
        if lines[i - 1].startswith("|") and line.strip() and not line.startswith("|"):
            raise AssertionError(f"line {i + 1} continues a table row: {line[:60]!r}")
        if line.startswith("|"):
            assert line.rstrip().endswith("|"), f"line {i + 1}: {line[-60:]!r}"

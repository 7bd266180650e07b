"""Pipelines: the only modules that combine measuring, storing and analysing.

bench (plan and run jobs), sweep (size ladders), suites, advise (gather evidence, then rank),
calibrate, validate, predict, measure (one job), scale_jax and scale_torch (data-parallel
scaling), llm (language models: fit, devices needed, prefill/decode predictions, published
rows scored leave-one-out). Everything below them is either measuring (timing, backends,
execute), storage (store) or pure analysis (analysis); everything above them renders (report,
commands, cli).
"""

"""Which arithmetic unit a GPU operator runs on: the precision policy, stated and sourced.

One function decides, for every (device, dtype, operator class, framework), whether a matrix
operator runs on FP32 SIMT lanes, TF32/BF16/FP16/INT8 tensor cores or AMD's FP32 matrix cores,
at which peak and which efficiency, and why. Predictions and ``advise`` print the choice.

Framework defaults it encodes (each a documented default of that framework):

- torch, float32 matmuls: FP32 (``torch.backends.cuda.matmul.allow_tf32`` defaults to False
  since PyTorch 1.12; ``torch.set_float32_matmul_precision("highest")`` is the default).
- torch, float32 convolutions: TF32 on GPUs that have it (``torch.backends.cudnn.allow_tf32``
  defaults to True).
- JAX on GPU, float32: TF32 for matmuls and convolutions (``jax_default_matmul_precision``
  DEFAULT lets XLA use TF32 on Ampere and newer).
- JAX on TPU, float32: one bfloat16 MXU pass (XLA DEFAULT precision); not decided here.
- ROCm (AMD CDNA), float32 matmuls: rocBLAS runs FP32 GEMMs on the matrix cores (MFMA FP32,
  the ``fp32m`` peak); there is no TF32 on CDNA1/2.
- bfloat16/float16/int8: tensor (matrix) cores at their dense peak where the device has one;
  otherwise the FP32 lanes (the note says so).

The efficiency of a tensor unit follows one rule shared with the catalog roofs: the device's
own catalog row (``matmul``; ``matmul_fp8`` for FP8) where it has one, the vendor figure
otherwise; a row whose derivation says "assumption" makes the choice say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from chipfit.analysis.gpu_kernels import GpuFigures

__all__ = ["FP32M_EFFICIENCY", "FP32M_SEARCHED", "PrecisionChoice", "TENSOR_DTYPES",
           "TENSOR_EFFICIENCY", "device_efficiency", "gpu_precision"]

#: Fraction of a tensor-core peak that a large GEMM reaches, by vendor, with its source: the
#: fallback for a GPU whose catalog entry has no matmul efficiency row of its own. Where the
#: catalog has one (``[devices.KEY.efficiency]``), :func:`device_efficiency` uses it, so this
#: route and the catalog-roof route price a device's tensor cores at the same fraction.
TENSOR_EFFICIENCY = {
    "NVIDIA": (0.807, "median BF16 MAMF/peak of NVIDIA parts, stas00/ml-engineering MAMF "
                      "table (A100 SXM 0.869, GH200 0.836, A100 PCIe 0.811, H100 SXM 0.803)"),
    "AMD": (0.56, "mean BF16 MAMF/peak of AMD parts, stas00/ml-engineering MAMF table "
                  "(MI325X 0.604, MI300X 0.514)"),
}
#: Fraction of the FP32 matrix-core (MFMA, ``fp32m``) peak a large FP32 GEMM reaches, by AMD
#: architecture, where an FP32 GEMM figure is published. CDNA2 is one GCD design (MI210, and
#: each GCD of MI250/MI250X: gfx90a, the same rocBLAS/Tensile MFMA kernels), so its figure
#: is the family's. Other CDNA generations fall back to the device's BF16 figure (its catalog
#: row, else the vendor's above), an assumption each row states (FP32M_SEARCHED: what was
#: looked for and not found).
FP32M_EFFICIENCY = {
    "cdna2": (0.837, "rocBLAS SGEMM M=N=K=8192 NN on a bare-metal MI210 (gfx90a, MFMA kernel "
                     "MT256x128x16_MI16x16x4): 37.9 TFLOPS / 45.3 FP32-matrix peak, measured "
                     "by AMD in ROCm/rocm-libraries issue #9453 (2026-07-19; sweep 1024-8192: "
                     "30.1, 34.6, 32.3, 37.9 TFLOPS)"),
}
FP32M_SEARCHED = ("no published FP32 GEMM (SGEMM on MFMA) figure was found for this CDNA "
                  "generation (searched 2026-12-07: ROCm/rocBLAS/hipBLASLt/Tensile issues, AMD's "
                  "Max-Achievable-FLOPs and TAF blogs, which give FP16/BF16/FP8 only, CDNA "
                  "microbenchmark papers, Chips and Cheese's MI300A article, whose FP32 figure "
                  "is OpenCL vector throughput); the only FP32 one is CDNA2's (MI210, 0.837)")
TENSOR_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "int8": "int8", "uint8": "int8",
                 "float8_e4m3fn": "fp8", "float8_e5m2": "fp8"}
MATRIX = ("matmul", "conv", "attention", "recurrent")


@dataclass(frozen=True)
class PrecisionChoice:
    """How one (dtype, class) runs: ``unit`` and ``peak`` (FLOP/s; None = the fitted FP32
    SIMT model), ``efficiency`` (None = fitted) and ``why`` (the rule and its source)."""

    dtype: str
    op_class: str
    unit: str
    peak: float | None
    efficiency: float | None
    why: str
    #: What this choice takes on assumption rather than measurement ("" where nothing).
    assumption: str = ""

    def label(self) -> str:
        return f"{self.dtype} {self.op_class}: {self.unit}"


def _simt(dtype: str, op_class: str, why: str) -> PrecisionChoice:
    return PrecisionChoice(dtype, op_class, "FP32 lanes (SIMT)", None, None, why)


def _tensor(dev: GpuFigures, dtype: str, op_class: str, precision: str,
            why: str) -> PrecisionChoice | None:
    peak = dev.tensor_peak(precision)
    if peak is None:
        return None
    eff, source, assumed = _bf16_efficiency(dev)
    unit = "FP32 matrix cores (MFMA)" if precision == "fp32m" else f"{precision.upper()} tensor cores"
    assumption = assumed
    own_fp8 = device_efficiency(dev, "matmul_fp8") if precision == "fp8" else None
    if precision == "fp32m" and dev.architecture in FP32M_EFFICIENCY:
        eff, source = FP32M_EFFICIENCY[dev.architecture]  # a measured FP32 GEMM figure
        assumption = ""
    elif precision == "fp32m":
        assumption = (f"{dev.name} FP32 matrix (MFMA) efficiency {eff} borrowed from BF16 "
                      f"measurements ({_short(source)}): {FP32M_SEARCHED}"
                      + (f"; {assumed}" if assumed else ""))
    elif own_fp8 is not None:
        eff, source = own_fp8[0], own_fp8[1]
        assumption = own_fp8[2]
    elif precision not in ("bf16", "fp16"):
        # the efficiencies are BF16 measurements: another precision borrows them
        assumption = (f"{dev.name} {precision} matrix efficiency {eff} borrowed from BF16 "
                      f"measurements ({_short(source)}); no {precision} GEMM figure"
                      + (f"; {assumed}" if assumed else ""))
    return PrecisionChoice(dtype, op_class, unit, peak, eff, f"{why}; efficiency {eff}: {source}",
                           assumption)


def _short(source: str) -> str:
    """A source's first clause, for an assumption line."""
    return source.split(" (")[0].split(",")[0].split(";")[0]


def device_efficiency(dev: GpuFigures, name: str = "matmul") -> tuple[float, str, str] | None:
    """The catalog's own ``name`` efficiency row for ``dev`` (``[devices.KEY.efficiency]``,
    user catalogs included) as (value, source, assumption), or None where the entry has no
    row of its own (then the vendor figure applies). ``assumption`` is the row's derivation
    where it says it is one (the marker the catalog-roof route reads too), else ""."""
    from chipfit.hardware.catalog import load_catalog

    catalog = load_catalog()
    if dev.key not in catalog:
        return None
    for row in catalog[dev.key].efficiencies:
        if row.name == name and row.basis == "device":
            source = f"catalog {dev.key} {name} row: {row.derivation}"
            assumed = row.derivation if "assumption" in row.derivation.lower() else ""
            return row.value, source, assumed
    return None


def _bf16_efficiency(dev: GpuFigures) -> tuple[float, str, str]:
    """One rule for both routes: the device's own catalog matmul (BF16) row where it has one,
    the vendor figure otherwise; with what of it is assumed."""
    own = device_efficiency(dev, "matmul")
    if own is not None:
        return own
    eff, source = TENSOR_EFFICIENCY.get(dev.vendor, TENSOR_EFFICIENCY["NVIDIA"])
    assumed = ("" if dev.vendor in TENSOR_EFFICIENCY
               else f"{dev.vendor} tensor efficiency borrowed from NVIDIA's")
    return eff, source, assumed


def gpu_precision(dev: GpuFigures, dtype: str, op_class: str,
                  framework: str = "torch") -> PrecisionChoice:
    """The unit a ``dtype`` operator of ``op_class`` runs on under the framework's defaults."""
    if op_class not in MATRIX:
        return PrecisionChoice(dtype, op_class, "memory-bound (bandwidth)", None, None,
                               "non-matrix operators are timed by bytes moved")
    if dtype == "float32":
        return _float32(dev, op_class, framework)
    precision = TENSOR_DTYPES.get(dtype)
    if precision:
        choice = _tensor(dev, dtype, op_class, precision,
                         f"{dtype} runs on tensor cores at the dense {precision} peak")
        if choice:
            return choice
        return PrecisionChoice(dtype, op_class, "FP32 lanes (SIMT)", None, None,
                               f"{dev.name} has no {precision} tensor peak: FP32 lanes assumed "
                               "(an upper bound on time)",
                               f"no {precision} tensor peak for {dev.name}: priced on FP32 lanes")
    return _simt(dtype, op_class, f"{dtype}: FP32 lanes assumed")


def _float32(dev: GpuFigures, op_class: str, framework: str) -> PrecisionChoice:
    if dev.vendor == "AMD":
        choice = _tensor(dev, "float32", op_class, "fp32m",
                         "ROCm runs FP32 GEMMs and convolutions on the CDNA matrix cores")
        if choice:
            return choice
    tf32 = op_class == "conv" or framework == "jax"
    if tf32 and dev.tensor_peak("tf32"):
        why = ("torch.backends.cudnn.allow_tf32 defaults to True: cuDNN convolutions use TF32"
               if framework == "torch" else "JAX's default matmul precision uses TF32 on GPUs")
        choice = _tensor(dev, "float32", op_class, "tf32", why)
        if choice:
            return choice
    if framework == "torch" and op_class != "conv":
        why = ("torch.backends.cuda.matmul.allow_tf32 defaults to False: float32 matmuls "
               "stay FP32 (fitted SGEMM model)")
    else:
        why = f"{dev.name} has no TF32: FP32 lanes (fitted model)"
    return _simt("float32", op_class, why)

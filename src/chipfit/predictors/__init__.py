"""The one predictor seam (see :mod:`chipfit.predictors.core`)."""

from chipfit.predictors.core import (
    CALIBRATED,
    KERNEL_MODEL,
    ROOFLINE,
    ROOFLINE_LABEL,
    band_for,
    framework_for,
    predict_catalog,
    predict_local,
    route_for,
    stratum_for,
    trace_flavour,
)

__all__ = ["CALIBRATED", "KERNEL_MODEL", "ROOFLINE", "ROOFLINE_LABEL", "band_for", "framework_for",
           "predict_catalog", "predict_local", "route_for", "stratum_for", "trace_flavour"]

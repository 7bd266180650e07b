"""The one predictor seam (see :mod:`chipfit.predictors.core`)."""

from chipfit.predictors.core import (
    CALIBRATED,
    HOST_SPEEDS,
    KERNEL_MODEL,
    ROOFLINE,
    ROOFLINE_LABEL,
    band_for,
    check_host_speed,
    framework_for,
    predict_catalog,
    predict_local,
    route_for,
    stratum_for,
    sustained_share,
    trace_flavour,
)

__all__ = ["CALIBRATED", "HOST_SPEEDS", "KERNEL_MODEL", "ROOFLINE", "ROOFLINE_LABEL", "band_for",
           "check_host_speed", "framework_for", "predict_catalog", "predict_local", "route_for",
           "stratum_for", "sustained_share", "trace_flavour"]

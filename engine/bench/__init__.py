"""Efficiency benchmark: parameters, MACs over all kernel dims, CPU latency, GEMM peak, reports."""

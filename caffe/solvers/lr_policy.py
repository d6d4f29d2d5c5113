"""Caffe's learning-rate policies, computed as Caffe computes them (single precision, with C++'s
promotions): the rate for the update of iteration ``iter`` (before it is incremented).

    fixed      base_lr
    step       base_lr * gamma ^ floor(iter / stepsize)
    exp        base_lr * gamma ^ iter
    inv        base_lr * (1 + gamma * iter) ^ (-power)
    multistep  base_lr * gamma ^ current_step, current_step advancing by at most one per
               iteration when iter >= stepvalue[current_step]
    poly       base_lr * (1 - iter / max_iter) ^ power
    sigmoid    base_lr / (1 + exp(-gamma * (iter - stepsize)))
"""
from __future__ import annotations

import numpy as np

from ..errors import SolverError

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")

f32 = np.float32


def check_policy(param) -> None:
    """Caffe's CHECKs on the policy's settings, raised as SolverError before training starts."""
    policy = param.lr_policy
    if policy not in POLICIES:
        raise SolverError(f"unknown lr_policy '{policy}'; known policies: {', '.join(POLICIES)}")
    if policy in ("step", "sigmoid") and param.stepsize <= 0:
        raise SolverError(f"lr_policy '{policy}' needs stepsize > 0, got {param.stepsize}")
    if policy in ("step", "exp", "inv", "multistep", "sigmoid") and param.gamma < 0:
        raise SolverError(f"lr_policy '{policy}' needs gamma >= 0, got {param.gamma}")
    if policy == "poly" and param.max_iter <= 0:
        raise SolverError("lr_policy 'poly' needs max_iter > 0")


def learning_rate(param, iteration: int, current_step: int) -> tuple[float, int]:
    """(rate as a float32 value, updated current_step) for the update of ``iteration``."""
    policy = param.lr_policy
    base = f32(param.base_lr)
    gamma = f32(param.gamma)
    if policy == "fixed":
        rate = base
    elif policy == "step":
        current_step = iteration // param.stepsize
        rate = f32(np.float64(base) * np.float64(gamma) ** current_step)
    elif policy == "exp":
        rate = f32(np.float64(base) * np.float64(gamma) ** iteration)
    elif policy == "inv":
        rate = base * np.power(f32(1) + gamma * f32(iteration), -f32(param.power), dtype=np.float32)
    elif policy == "multistep":
        if current_step < len(param.stepvalue) and iteration >= param.stepvalue[current_step]:
            current_step += 1
        rate = f32(np.float64(base) * np.float64(gamma) ** current_step)
    elif policy == "poly":
        frac = f32(1) - f32(iteration) / f32(param.max_iter)
        rate = base * np.power(frac, f32(param.power), dtype=np.float32)
    elif policy == "sigmoid":
        z = -gamma * (f32(iteration) - f32(param.stepsize))
        rate = base * (f32(1) / (f32(1) + np.exp(z, dtype=np.float32)))
    else:
        raise SolverError(f"unknown lr_policy '{policy}'")
    return float(f32(rate)), current_step

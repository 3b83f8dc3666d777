"""The kernels alone, fastnn beside its peers: affine+ReLU (GEMM-bound), softmax
cross-entropy and inverted dropout (memory- and RNG-bound).  One benchmark group per
kernel; every benchmarked implementation's result is checked afterwards."""
import numpy as np
import pytest

import cases
from conftest import bench_and_check, names

AFFINE = cases.affine_case(np.float32)
SOFTMAX = cases.softmax_case(np.float32)
DROPOUT = cases.dropout_case(np.float32)


@pytest.mark.parametrize("impl", names(AFFINE))
def test_affine_relu_forward_backward(benchmark, impl):
    n, d, h = cases.AFFINE_SHAPE
    bench_and_check(benchmark, AFFINE, impl, units=1, rounds=10,
                    group=f"affine+ReLU fwd+bwd {n}x{d} @ {d}x{h} float32")


@pytest.mark.parametrize("impl", names(SOFTMAX))
def test_softmax_cross_entropy(benchmark, impl):
    n, k = cases.SOFTMAX_SHAPE
    bench_and_check(benchmark, SOFTMAX, impl, units=1, rounds=10,
                    group=f"softmax cross-entropy fwd+bwd {n}x{k} float32")


@pytest.mark.parametrize("impl", names(DROPOUT))
def test_inverted_dropout(benchmark, impl):
    n, k = cases.DROPOUT_SHAPE
    bench_and_check(benchmark, DROPOUT, impl, units=1, rounds=5,
                    group=f"inverted dropout fwd+bwd {n}x{k} float32 p={cases.DROPOUT_P}")

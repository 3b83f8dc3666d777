"""team_gemm, the product every layer and the plan run: fastnn's small-GEMM loops for
shapes with one tiny side, else BLAS on a shape-only block grid, single-threaded inside
fastnn's calls so that no bit depends on the thread count."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from conftest import DTYPES
from fastnn import _runtime

TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _operands(m, n, k, ta, tb, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b, (a.T if ta else a) @ (b.T if tb else b)


# (m, n, k, trans_a, trans_b, expected path): the spiral's five products and the edges
CASES = [
    (300, 100, 2, False, False, ("small", 0)),    # x @ W, 2 inputs
    (300, 3, 100, False, False, ("small", 1)),    # h @ W2, 3 classes
    (300, 100, 3, False, True, ("small", 0)),     # dscores @ W2.T
    (2, 100, 300, True, False, ("small", 2)),     # X.T @ dz
    (100, 3, 300, True, False, ("small", 3)),     # h.T @ dscores
    (7, 5, 9, False, True, ("small", 1)),
    (1, 1, 1, False, False, ("small", 1)),
    (32, 100, 10, False, False, ("small", 4)),    # 10 inputs (9 to 16: k16)
    (300, 64, 16, False, True, ("small", 4)),
    (10, 100, 32, True, False, ("small", 5)),     # X.T @ dz, 10 inputs (m16, ta)
    (16, 9, 50, True, False, ("small", 5)),
    (32, 100, 17, False, False, ("blas", 1)),     # 17 inputs: BLAS
    (17, 100, 32, True, False, ("blas", 1)),
    (50, 40, 30, False, False, ("blas", 1)),      # no tiny side
    (64, 64, 64, True, True, ("blas", 1)),        # both transposed
    (256, 512, 784, False, False, ("blas", 4)),   # split into 4 column blocks
    (784, 256, 512, True, False, ("blas", 6)),    # split into 6 row blocks
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k,ta,tb,path", CASES)
def test_every_path_computes_the_product(m, n, k, ta, tb, path, dtype):
    assert _runtime.gemm_path(m, n, k, ta, tb) == path
    a, b, want = _operands(m, n, k, ta, tb, dtype)
    got = _runtime.matmul(a, b, np.full((m, n), np.nan, dtype), ta, tb)
    scale = np.abs(a).max() * np.abs(b).max() * k
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", range(1, 9))
def test_tiny_n_forms_each_row_the_same_in_a_group_or_alone(n, dtype):
    """tiny n runs its rows' dots side by side in groups (8, 4 or 2 rows, by n) and the
    rows left over one at a time; a row's dot must not depend on which: every row of an
    11-row product (a remainder after each group size) equals that row's product
    computed alone, bit for bit.  k = 37 leaves a scalar tail after whole vectors of
    either dtype."""
    m, k = 11, 37
    assert _runtime.gemm_path(m, n, k) == ("small", 1)
    a, b, want = _operands(m, n, k, False, False, dtype, seed=n)
    got = _runtime.matmul(a, b, np.empty((m, n), dtype))
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * k * 20)
    for i in range(m):
        alone = _runtime.matmul(a[i:i + 1].copy(), b, np.empty((1, n), dtype))
        np.testing.assert_array_equal(got[i:i + 1], alone)


@pytest.mark.parametrize("m,n,k,ta,tb,path", [c for c in CASES if c[5][0] == "blas"]
                         + [(256, 1024, 1024, False, True, ("blas", 8)),
                            (1024, 1024, 256, True, False, ("blas", 8)),
                            (4096, 64, 4096, False, False, ("blas", 16))])
def test_the_grid_cuts_the_longer_side_into_aligned_blocks(m, n, k, ta, tb, path):
    by_cols, edges = _runtime.gemm_grid(m, n, k)
    assert by_cols == (n >= m)
    side = n if by_cols else m
    assert len(edges) - 1 == path[1]
    assert edges[0] == 0 and edges[-1] == side
    assert all(lo < hi for lo, hi in zip(edges, edges[1:]))
    assert all(e % 16 == 0 for e in edges[:-1])
    with pytest.raises(ValueError, match="m, n and k"):
        _runtime.gemm_grid(-1, n, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k,ta,tb,path", [c for c in CASES if c[5][0] == "blas"])
def test_same_bits_at_1_and_2_threads(m, n, k, ta, tb, path, dtype):
    a, b, _ = _operands(m, n, k, ta, tb, dtype, seed=1)
    one = _runtime.matmul(a, b, np.empty((m, n), dtype), ta, tb, 1)
    two = _runtime.matmul(a, b, np.empty((m, n), dtype), ta, tb, 2)
    np.testing.assert_array_equal(one, two)


def test_blas_runs_single_threaded_inside_and_is_restored_after():
    assert _runtime.blas_threads_controlled()
    before = [i["num_threads"] for i in threadpool_info()]
    a, b, _ = _operands(256, 512, 784, False, False, np.float32)
    _runtime.matmul(a, b, np.empty((256, 512), np.float32), False, False, 2)
    assert [i["num_threads"] for i in threadpool_info()] == before


def test_bad_arguments_are_refused():
    a = np.ones((3, 4))
    with pytest.raises(ValueError, match="op"):
        _runtime.matmul(a, np.ones((3, 4)), np.empty((3, 4)))
    with pytest.raises(ValueError, match="out"):
        _runtime.matmul(a, np.ones((4, 2)), np.empty((3, 3)))
    with pytest.raises(TypeError):
        _runtime.matmul(a, np.ones((4, 2), np.float32), np.empty((3, 2)))
    with pytest.raises(ValueError, match="n_threads"):
        _runtime.matmul(a, np.ones((4, 2)), np.empty((3, 2)), n_threads=0)

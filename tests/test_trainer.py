"""The Trainer: mini-batch training on the plan, labels, validation, callbacks, progress."""
import warnings

import numpy as np
import pytest

from fastnn import callbacks as cb
from fastnn import optim, regularization as R
from fastnn.datasets import spiral
from fastnn.losses import L2Regression, SoftmaxCrossEntropy
from fastnn.net import MLP
from fastnn._plan import shuffled_rows
from fastnn.plan import build_plan
from fastnn.trainer import Trainer, gradient_descent

X, Y = spiral(100, 3, seed=0)


def _trainer(seed=0, dtype=np.float64, **kw):
    kw.setdefault("optimizer", optim.Adam(lr=1e-2))
    kw.setdefault("batch_size", 32)
    return Trainer(MLP([2, 50, 3], seed=seed, dtype=dtype), seed=seed, verbose=0, **kw)


def test_same_seed_same_bits():
    a, b = _trainer(), _trainer()
    ha = a.fit(X, Y, epochs=5, validation_split=0.2)
    hb = b.fit(X, Y, epochs=5, validation_split=0.2)
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)
    np.testing.assert_array_equal(ha.step_loss, hb.step_loss)
    assert ha.val_loss == hb.val_loss
    c = _trainer(seed=1)
    c.fit(X, Y, epochs=5, validation_split=0.2)
    assert not np.array_equal(a.model.flat_params, c.model.flat_params)


def test_a_legacy_random_state_seed_is_refused_by_name():
    """A Trainer keeps a Generator (its state goes into checkpoints): a RandomState is a
    TypeError naming seed, not an AttributeError from deep inside."""
    with pytest.raises(TypeError, match="seed must be None, an int or a numpy Generator"):
        Trainer(MLP([2, 5, 3], seed=0), seed=np.random.RandomState(0))


def test_mini_batches_are_permutations_gathered_by_the_plan():
    """The trainer's steps equal a bare plan fed the same shuffled indices, bit for bit."""
    tr = _trainer()
    tr.fit(X, Y, epochs=4, record_every=1)
    net = MLP([2, 50, 3], seed=0)
    plan = build_plan(net, SoftmaxCrossEntropy(), optimizer=optim.Adam(lr=1e-2),
                      batch_size=32).bind(X, Y)
    per_epoch = 300 // 32
    for e in range(4):
        rows = shuffled_rows(300, per_epoch * 32, 1, tr.shuffle_seed, e)
        assert sorted(set(rows.tolist())) == sorted(rows.tolist())     # no row twice
        plan.run(per_epoch, rows)
    np.testing.assert_array_equal(tr.model.flat_params, net.flat_params)
    assert len(tr.history_.step_loss) == 4 * per_epoch


def test_full_batch_is_the_notes_gradient_descent():
    tr = Trainer(MLP([2, 100, 3], seed=0), optimizer=optim.SGD(1.0), reg=1e-3, verbose=0)
    h = tr.fit(X, Y, steps=200)
    net = MLP([2, 100, 3], seed=0)
    g = gradient_descent(net, SoftmaxCrossEntropy(), X, Y, steps=200, step_size=1.0, reg=1e-3)
    np.testing.assert_array_equal(tr.model.flat_params, net.flat_params)
    np.testing.assert_array_equal(h.step_loss, g.loss)
    assert len(h) == 1                     # a History row every 1024 steps (auto)
    h = tr.fit(X, Y, steps=2500)
    assert len(h) == 3 and h.epochs == [1223, 2247, 2699]


@pytest.mark.parametrize("labels", [np.array([3, 7, 9]), np.array(["cat", "dog", "emu"]),
                                    np.array([-1.5, 0.0, 2.5])])
def test_labels_of_any_kind_round_trip(labels):
    y = labels[Y]
    tr = _trainer()
    tr.fit(X, y, epochs=30)
    np.testing.assert_array_equal(tr.classes_, np.sort(labels))
    pred = tr.predict(X)
    assert pred.dtype == y.dtype and set(pred) <= set(labels)
    assert tr.score(X, y) > 0.8
    unknown = np.array(["zebra"]) if labels.dtype.kind == "U" else np.array([labels.max() + 1])
    with pytest.raises(ValueError, match="not one of the classes"):
        tr.score(X[:1], unknown)


def test_too_many_classes_for_the_outputs():
    with pytest.raises(ValueError, match="4 classes but the model has 3 outputs"):
        _trainer().fit(X, np.arange(300) % 4, epochs=1)


def test_float32_net_with_the_default_loss_just_works():
    tr = Trainer(MLP([2, 50, 3], seed=0, dtype=np.float32), batch_size=32,
                 optimizer=optim.Adam(lr=1e-2), seed=0, verbose=0)
    tr.fit(X, Y, epochs=20)
    assert tr.model.flat_params.dtype == np.float32
    assert tr.loss.dtype == np.float32
    assert tr.score(X, Y) > 0.7


def test_unaligned_and_byte_swapped_data_are_copied_not_refused():
    Xs = X.astype(">f8")
    buf = np.zeros(X.size * 8 + 1, np.uint8)
    Xu = np.frombuffer(buf[1:].data, dtype=np.float64).reshape(X.shape)   # misaligned
    Xu[...] = X
    tr = _trainer()
    tr.fit(Xs, Y, epochs=2)
    tr2 = _trainer()
    tr2.fit(Xu, Y, epochs=2)
    np.testing.assert_array_equal(tr.model.flat_params, tr2.model.flat_params)


def test_regression_metric_and_r2():
    rng = np.random.default_rng(0)
    Xr = rng.standard_normal((256, 3))
    yr = Xr @ np.array([[1.0], [-2.0], [0.5]]) + 0.1
    tr = Trainer(MLP([3, 16, 1], seed=0), L2Regression(), optim.Adam(lr=1e-2), batch_size=32,
                 seed=0, verbose=0)
    h = tr.fit(Xr, yr, epochs=40, validation_split=0.25, record_every=1)
    assert h.metric_name == "loss"
    assert h.metric[-1] < h.metric[0] and h.val_loss[-1] < h.val_loss[0]
    assert tr.score(Xr, yr) > 0.9
    assert tr.predict(Xr).shape == (256, 1)


# ---- history -------------------------------------------------------------------------------

def test_history_records_and_exports():
    tr = _trainer(regularizer=R.L2(1e-3))
    h = tr.fit(X, Y, epochs=6, validation_data=(X[:50], Y[:50]), record_every=2)
    d = h.as_dict()
    assert list(d["epoch"]) == [1, 3, 5]
    for key in ("loss", "data_loss", "reg_loss", "metric", "val_loss", "val_metric", "lr",
                "seconds"):
        assert d[key].shape == (3,) and np.all(np.isfinite(d[key])), key
    assert np.all(d["reg_loss"] > 0)
    np.testing.assert_allclose(d["loss"], d["data_loss"] + d["reg_loss"])
    assert d["dead_units"].shape == (3, 1)
    assert d["step_loss"].shape == (6 * 9,)
    import importlib.util
    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(ImportError, match="pandas"):
            h.to_dataframe()
    else:
        df = h.to_dataframe()
        assert list(df.index) == [1, 3, 5] and "dead_units_0" in df


def test_dead_units_are_counted():
    tr = _trainer()
    tr.model.layers[0].b[:25] = -1e3          # half the hidden units can never fire
    tr.model.layers[0].W[:, :25] = 0.0
    h = tr.fit(X, Y, epochs=1, record_every=1)
    assert h.dead_units[0] == [pytest.approx(0.5, abs=0.02)]


# ---- callbacks -----------------------------------------------------------------------------

def test_early_stopping_restores_the_best_weights():
    seen = {}

    def keep(trainer, epoch, logs):
        seen[epoch] = (logs["val_loss"], trainer.model.flat_params.copy())
    stop = cb.EarlyStopping("val_loss", patience=2)
    tr = _trainer(optimizer=optim.Adam(lr=0.2))          # too large: it will get worse
    h = tr.fit(X, Y, epochs=60, validation_split=0.3, record_every=1,
               callbacks=[cb.LambdaCallback(keep), stop])
    assert h.stopped_by is stop and len(h) < 60
    best = min(seen, key=lambda e: seen[e][0])
    assert best == stop.best_epoch
    np.testing.assert_array_equal(tr.model.flat_params, seen[best][1])


def test_a_users_callback_can_stop_training():
    class StopAtTwo:
        def on_epoch_end(self, trainer, epoch, logs):
            return epoch == 2
    h = _trainer().fit(X, Y, epochs=10, record_every=1, callbacks=[StopAtTwo()])
    assert len(h) == 3 and isinstance(h.stopped_by, StopAtTwo)
    with pytest.raises(TypeError, match="not a callback"):
        _trainer().fit(X, Y, epochs=1, callbacks=[object()])


def test_non_finite_loss_stops_and_keeps_the_last_finite_weights():
    tr = Trainer(MLP([2, 100, 3], seed=0), optimizer=optim.SGD(1e6), reg=1e-3, verbose=0)
    with pytest.warns(RuntimeWarning, match="non-finite at step"):
        h = tr.fit(X, Y, steps=50)
    assert isinstance(h.stopped_by, cb.TerminateOnNonFinite)
    good = len(h.step_loss)
    assert 0 < good < 50 and np.all(np.isfinite(h.step_loss))
    assert np.all(np.isfinite(tr.model.flat_params))
    ref = MLP([2, 100, 3], seed=0)         # exactly `good` steps
    build_plan(ref, SoftmaxCrossEntropy(), optimizer=optim.SGD(1e6), regularizer=1e-3,
               batch_size=300) \
        .bind(X, Y).run(good)
    np.testing.assert_array_equal(tr.model.flat_params, ref.flat_params)
    with pytest.raises(FloatingPointError, match="non-finite"):
        Trainer(MLP([2, 100, 3], seed=0), optimizer=optim.SGD(1e6), reg=1e-3, verbose=0).fit(
            X, Y, steps=50, callbacks=[cb.TerminateOnNonFinite(error=True)])


def test_ctrl_c_returns_the_history_so_far_with_complete_weights():
    def interrupt(trainer, epoch, logs):
        if epoch == 3:
            raise KeyboardInterrupt
    tr = _trainer()
    h = tr.fit(X, Y, epochs=10, record_every=1, callbacks=[cb.LambdaCallback(interrupt)])
    assert h.interrupted and len(h) == 4
    ref = _trainer()
    ref.fit(X, Y, epochs=4, record_every=1)
    np.testing.assert_array_equal(tr.model.flat_params, ref.model.flat_params)


def test_learning_rate_scheduler():
    sched = cb.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    h = _trainer().fit(X, Y, epochs=4, record_every=1, callbacks=[sched])
    np.testing.assert_allclose(h.lr, [1e-2, 5e-3, 2.5e-3, 1.25e-3])


# ---- progress and arguments ----------------------------------------------------------------

def test_progress_lines_when_not_a_terminal(capsys):
    Trainer(MLP([2, 10, 3], seed=0), batch_size=100, seed=0, verbose=1).fit(
        X, Y, epochs=3, record_every=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 0: loss")
    Trainer(MLP([2, 10, 3], seed=0), batch_size=100, seed=0, verbose=0).fit(X, Y, epochs=3)
    assert capsys.readouterr().out == ""


def test_bad_arguments():
    tr = _trainer()
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        tr.fit(X, Y)
    with pytest.raises(ValueError, match="batch_size 32 is larger"):
        tr.fit(X[:20], Y[:20], epochs=1)
    with pytest.raises(ValueError, match="not both"):
        tr.fit(X, Y, epochs=1, validation_split=0.2, validation_data=(X, Y))
    with pytest.raises(ValueError, match="validation_split"):
        tr.fit(X, Y, epochs=1, validation_split=1.0)
    with pytest.raises(ValueError, match="X"):
        tr.fit(X[:, :1], Y, epochs=1)
    with pytest.raises(ValueError, match="y has 299 labels"):
        tr.fit(X, Y[:-1], epochs=1)
    with pytest.raises(TypeError, match="model"):
        Trainer("net")
    with pytest.raises(ValueError, match="not both"):
        Trainer(MLP([2, 3]), reg=1e-3, regularizer=R.L1(1e-3))
    with pytest.raises(ValueError, match="verbose"):
        Trainer(MLP([2, 3]), verbose=5)


def test_warm_fit_continues_the_same_plan():
    tr = _trainer()
    tr.fit(X, Y, epochs=2)
    plan = tr.plan
    tr.fit(X, Y, epochs=2)
    assert tr.plan is plan and tr.epoch == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tr.score(X, Y) > 0.5


def test_a_pickled_trainer_resumes_bit_for_bit():
    import pickle
    a = _trainer(optimizer=optim.Adam(lr=1e-2))
    a.fit(X, Y, epochs=3)
    blob = pickle.dumps(a)
    assert len(blob) < 20_000            # parameters and state, not the plan's buffers
    b = pickle.loads(blob)
    a.fit(X, Y, epochs=3)
    b.fit(X, Y, epochs=3)
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)
    np.testing.assert_array_equal(a.history_.step_loss, b.history_.step_loss)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_a_loss_with_parameters_resumes_from_a_pickle_and_a_checkpoint(tmp_path):
    """A hierarchical softmax's own weights and their Adam moments travel with a pickled
    Trainer and in a checkpoint: either way, training on gives the bits of an
    uninterrupted run (the checkpoint's loss is rebuilt with other initial weights)."""
    import pickle
    from fastnn.losses import HierarchicalSoftmax
    a = Trainer(MLP([2, 16, 8], seed=0), HierarchicalSoftmax(8, 3, seed=0), "adam",
                batch_size=30, seed=0, verbose=0)
    a.fit(X, Y, epochs=2)
    b = pickle.loads(pickle.dumps(a))
    path = tmp_path / "ck.safetensors"
    a.save_checkpoint(path)
    c = Trainer.from_checkpoint(path, HierarchicalSoftmax(8, 3, seed=1), verbose=0)
    a.fit(X, Y, epochs=2)
    for other in (b, c):
        other.fit(X, Y, epochs=2)
        np.testing.assert_array_equal(a.model.flat_params, other.model.flat_params)
        np.testing.assert_array_equal(a.loss._own_flat()[0], other.loss._own_flat()[0])
        np.testing.assert_array_equal(a.history_.step_loss, other.history_.step_loss)


def test_a_checkpoint_refuses_a_loss_it_was_not_trained_with(tmp_path):
    from fastnn.losses import HierarchicalSoftmax
    hs = Trainer(MLP([2, 16, 8], seed=0), HierarchicalSoftmax(8, 3, seed=0), "adam",
                 batch_size=30, seed=0, verbose=0)
    hs.fit(X, Y, epochs=1)
    hs.save_checkpoint(tmp_path / "hs.safetensors")
    plain = Trainer(MLP([2, 16, 3], seed=0), batch_size=30, seed=0, verbose=0)
    plain.fit(X, Y, epochs=1)
    plain.save_checkpoint(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match=r"holds loss parameters \['W', 'b'\], the loss "
                                         r"given \(SoftmaxCrossEntropy\) has none"):
        Trainer.from_checkpoint(tmp_path / "hs.safetensors", SoftmaxCrossEntropy())
    with pytest.raises(ValueError, match="holds no parameters for the loss"):
        Trainer.from_checkpoint(tmp_path / "plain.safetensors",
                                HierarchicalSoftmax(3, 3, seed=0))
    with pytest.raises(ValueError, match="loss parameter W is float64 .*build the loss"):
        Trainer.from_checkpoint(tmp_path / "hs.safetensors", HierarchicalSoftmax(8, 4))
    # the same shapes on another tree: node 1 would split other classes
    with pytest.raises(ValueError, match=r"trained on another tree: class 0's path from the "
                                         r"root is 'L' there and 'LL' in the loss given"):
        Trainer.from_checkpoint(tmp_path / "hs.safetensors",
                                HierarchicalSoftmax(8, 3, tree=((0, 1), 2)))
    again = Trainer.from_checkpoint(tmp_path / "hs.safetensors",      # balanced_tree(3)
                                    HierarchicalSoftmax(8, 3, tree=(0, (1, 2))))
    np.testing.assert_array_equal(again.loss.W, hs.loss.W)


def test_a_checkpoint_without_a_tree_or_with_a_corrupt_one(tmp_path):
    """A checkpoint written before fastnn recorded the tree resumes unchecked; a
    loss_tree that is no tree over the loss's classes is refused as corrupt."""
    from fastnn import io
    from fastnn.losses import HierarchicalSoftmax
    hs = Trainer(MLP([2, 16, 8], seed=0), HierarchicalSoftmax(8, 3, seed=0), "adam",
                 batch_size=30, seed=0, verbose=0)
    hs.fit(X, Y, epochs=1)
    path = tmp_path / "hs.safetensors"
    hs.save_checkpoint(path)
    ck = io.load_checkpoint(path)
    assert ck.extra["loss_tree"] == [-1, 0, -1, 1, 2]

    def rewrite(tree):
        extra = {k: v for k, v in ck.extra.items() if k != "loss_tree"}
        if tree is not None:
            extra["loss_tree"] = tree
        io.save_checkpoint(path, ck.net, optimizer=ck.optimizer,
                           optimizer_state=ck.optimizer_state, step=ck.step,
                           epoch=ck.epoch, rng_state=ck.rng_state, extra=extra,
                           loss_params=ck.loss_params, loss_state=ck.loss_state)
    rewrite(None)
    old = Trainer.from_checkpoint(path, HierarchicalSoftmax(8, 3, tree=((0, 1), 2)))
    np.testing.assert_array_equal(old.loss.W, hs.loss.W)
    for bad in ([-1, 0, 1, 2], [-1, 0, -1, 1], [-1, 0, -1, 1, 1], "tree", [-1, 0, 7]):
        rewrite(bad)
        with pytest.raises(ValueError, match="corrupt checkpoint: its loss_tree is not a "
                                             "tree over 3 classes"):
            Trainer.from_checkpoint(path, HierarchicalSoftmax(8, 3))


def test_a_tree_walk_round_trips():
    from fastnn.losses import (HierarchicalSoftmax, balanced_tree, tree_from_preorder,
                               tree_preorder)
    hs = HierarchicalSoftmax(4, 5, tree=((0, 1), (2, (3, 4))))
    assert hs.preorder == [-1, -1, 0, 1, -1, 2, -1, 3, 4]
    assert hs.branches == ["LL", "LR", "RL", "RRL", "RRR"]
    assert HierarchicalSoftmax(4, 5).branches == hs.branches      # balanced_tree(5)
    assert HierarchicalSoftmax(4, 3, tree=(2, (0, 1))).branches == ["RL", "RR", "L"]
    chain = 0
    for c in range(1, 3000):              # deeper than Python's recursion limit
        chain = (chain, c)
    for tree in (balanced_tree(37), (1, 0)):
        assert tree_from_preorder(tree_preorder(tree)) == tree
    walk = tree_preorder(chain)           # (tuple == recurses: compare the walks)
    assert walk == [-1] * 2999 + list(range(3000))
    assert tree_preorder(tree_from_preorder(walk)) == walk
    assert HierarchicalSoftmax(2, 3000, tree=chain).branches[0] == "L" * 2999
    for bad in ([], [0], [-1, 0], [-1, 0, 1, 2], [0, -1, 1], [-1, 0, -2], [-1, 0, 1.5]):
        with pytest.raises(ValueError, match="tree walk"):
            tree_from_preorder(bad)


def test_a_refused_resume_is_kept_and_refused_again():
    """State that does not fit the new plan is refused at fit, and the next fit refuses
    it again rather than training from fresh state (no plan is kept)."""
    t = Trainer(MLP([2, 8, 3], seed=0), optimizer="adam", batch_size=30, seed=0,
                verbose=0)
    t._resume = ((np.zeros(3), np.zeros(3)), 5, [])      # as a pickle would carry it
    for _ in range(2):
        with pytest.raises(ValueError, match="state"):
            t.fit(X, Y, epochs=1)
        assert t.plan is None and t._resume is not None


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    """With dropout and Adam: 3 epochs, a checkpoint, a new process's worth of objects,
    3 more epochs = 6 epochs in one go, bit for bit."""
    def trainer():
        return Trainer(MLP([2, 64, 3], dropout=0.8, seed=0), optimizer=optim.Adam(lr=1e-2),
                       batch_size=32, seed=5, verbose=0)
    whole = trainer()
    whole.fit(X, np.array(["x", "y", "z"])[Y], epochs=6)
    first = trainer()
    first.fit(X, np.array(["x", "y", "z"])[Y], epochs=3,
              callbacks=[cb.Checkpoint(tmp_path / "ckpt-{epoch}.safetensors", every=3)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["ckpt-2.safetensors"]
    resumed = Trainer.from_checkpoint(tmp_path / "ckpt-2.safetensors", verbose=0)
    assert resumed.epoch == 3 and list(resumed.classes_) == ["x", "y", "z"]
    resumed.fit(X, np.array(["x", "y", "z"])[Y], epochs=3)
    np.testing.assert_array_equal(resumed.model.flat_params, whole.model.flat_params)
    np.testing.assert_array_equal(resumed.history_.step_loss, whole.history_.step_loss[-27:])
    np.testing.assert_array_equal(resumed.predict(X), whole.predict(X))


CTRL_C_CHILD = """
import signal
# a process started in the background may inherit SIGINT ignored (Python then installs
# no KeyboardInterrupt handler): put Python's own handler back, as a terminal has it
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
from fastnn import callbacks as cb
from fastnn.datasets import spiral
from fastnn.net import MLP
from fastnn.trainer import Trainer
X, Y = spiral(100, 3, seed=0)
tr = Trainer(MLP([2, 100, 3], seed=0), batch_size=32, seed=0, verbose=0)

def started(trainer, epoch, logs):
    if epoch == 0:
        print("started", flush=True)
h = tr.fit(X, Y, epochs=10**6, record_every=1, callbacks=[cb.LambdaCallback(started)])
print("interrupted", h.interrupted, len(h) > 0, len(h.step_loss) % 9 == 0,
      bool(np.all(np.isfinite(tr.model.flat_params))), flush=True)
"""


def test_a_real_ctrl_c_returns_the_history(tmp_path):
    """SIGINT to a process in the middle of fit: fit returns (no traceback) with the
    history so far and finite weights of whole steps."""
    import signal
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "started"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert out.split() == ["interrupted", "True", "True", "True", "True"], out + err


def test_the_batch_order_is_a_fair_shuffle_and_the_twins_agree():
    from fastnn import _kernels
    rows = shuffled_rows(10, 10, 20000, 3, 0).reshape(20000, 10)
    assert all(sorted(r) == list(range(10)) for r in rows[:100].tolist())
    # each row lands in each position 1/10 of the time (binomial sd ~0.002)
    freq = np.stack([(rows == v).mean(axis=0) for v in range(10)])
    np.testing.assert_allclose(freq, 0.1, atol=0.01)
    np.testing.assert_array_equal(shuffled_rows(300, 256, 4, 9, 7),
                                  _kernels.NUMPY.shuffled_rows(300, 256, 4, 9, 7))
    # a pure function of (seed, epoch): epochs 7..10 at once = one at a time
    np.testing.assert_array_equal(shuffled_rows(300, 256, 4, 9, 7)[256:512],
                                  shuffled_rows(300, 256, 1, 9, 8))
    with pytest.raises(ValueError, match="keep"):
        shuffled_rows(5, 6, 1, 0, 0)
    with pytest.raises(ValueError, match="n_epochs"):
        shuffled_rows(300, 256, 2**31 - 1, 0, 0)


@pytest.mark.parametrize("n, keep", [(1000, 7), (10**6, 300), (2**32 - 1, 5), (41, 10)])
def test_a_few_rows_of_a_huge_range_take_memory_in_proportion_to_keep(n, keep):
    """keep << n draws through a table of moved entries, not an n-long permutation: the
    same rows as the dense shuffle would give (the twin's), and 2**32 - 1 rows need no
    32 GB.  Both halves of each epoch's draw are distinct rows of range(n)."""
    from fastnn import _kernels
    got = shuffled_rows(n, keep, 3, 5, 2)
    np.testing.assert_array_equal(got, _kernels.NUMPY.shuffled_rows(n, keep, 3, 5, 2))
    for block in got.reshape(3, keep):
        assert len(set(block.tolist())) == keep and 0 <= block.min() and block.max() < n


def test_the_dense_and_sparse_shuffles_agree_where_both_apply():
    """n = 4 keep is the last dense case, 4 keep + 1 the first sparse one: the first keep
    rows of the same permutation prefix agree with the twin either way."""
    from fastnn import _kernels
    for n in (40, 41):
        np.testing.assert_array_equal(shuffled_rows(n, 10, 6, 1, 0),
                                      _kernels.NUMPY.shuffled_rows(n, 10, 6, 1, 0))


def test_shuffle_false_takes_the_rows_in_order_cyclically():
    """Epoch e continues where e - 1 stopped: every row is used though 300 % 32 != 0."""
    tr = _trainer(shuffle=False)
    tr.fit(X, Y, epochs=3, record_every=1)
    plan = build_plan(MLP([2, 50, 3], seed=0), SoftmaxCrossEntropy(),
                      optimizer=optim.Adam(lr=1e-2),
                      batch_size=32).bind(X, Y)
    per = (300 // 32) * 32
    plan.run(3 * 9, (np.arange(3 * per, dtype=np.int64)) % 300)
    np.testing.assert_array_equal(tr.model.flat_params, plan.net.flat_params)


def test_sample_weight_metric_and_no_train_metric():
    w = np.where(Y == 0, 2.0, 0.5)
    tr = _trainer()
    seen = []

    def metric(scores, y, weights):
        seen.append(weights is not None and len(weights) == len(y))
        return float(np.average(np.argmax(scores, 1) == y, weights=weights))

    h = tr.fit(X, Y, epochs=3, record_every=1, sample_weight=w, validation_split=0.2,
               train_metric=False, metric=metric)
    assert np.all(np.isnan(h.metric)) and h.dead_units == [[], [], []]
    assert all(seen) and len(seen) == 3 and 0 <= h.val_metric[-1] <= 1
    plain = _trainer()
    plain.fit(X, Y, epochs=3, validation_split=0.2)
    assert not np.array_equal(plain.model.flat_params, tr.model.flat_params)
    with pytest.raises(ValueError, match="sample_weight"):
        _trainer().fit(X, Y, epochs=1, sample_weight=np.ones(5))
    with pytest.raises(TypeError, match="metric"):
        _trainer().fit(X, Y, epochs=1, metric="accuracy")
    # a triple gives the validation rows their weights; the weighted loss is recorded
    h = _trainer().fit(X[::2], Y[::2], epochs=1, validation_data=(X[1::2], Y[1::2],
                                                                   w[1::2]))
    assert np.isfinite(h.val_loss[-1])


# ---- continuing a run: what the next fit starts from --------------------------------------
# _trainer's runs take 9 steps per epoch (300 rows, batch 32).

def test_a_fit_that_ends_mid_epoch_is_continued_by_the_next(tmp_path):
    whole = _trainer()
    whole.fit(X, Y, steps=30)
    halves = _trainer()
    h = halves.fit(X, Y, steps=15, record_every=1)
    assert (halves.epoch, halves.epoch_step) == (1, 6) and h.epochs == [0, 1]
    halves.save_checkpoint(tmp_path / "c.safetensors")
    resumed = Trainer.from_checkpoint(tmp_path / "c.safetensors", verbose=0)
    assert (resumed.epoch, resumed.epoch_step) == (1, 6)
    for tr in (halves, resumed):
        h = tr.fit(X, Y, steps=15, record_every=1)
        assert (tr.epoch, tr.epoch_step) == (3, 3) and tr.plan.t == 30
        # rows end at the epoch boundaries: 3 steps finish epoch 1, 9 are epoch 2
        assert h.epochs == [1, 2, 3] and len(h.step_loss) == 15
        np.testing.assert_array_equal(tr.model.flat_params, whole.model.flat_params)
    # epochs=E from mid-epoch: E epochs' worth of steps, rows on the boundaries
    h = halves.fit(X, Y, epochs=1, record_every=1)
    assert h.epochs == [3, 4] and (halves.epoch, halves.epoch_step) == (4, 3)
    # data of another size cannot continue that epoch's batches: it counts as ended
    halves.fit(X[:250], Y[:250], epochs=1)        # 7 steps an epoch
    assert (halves.epoch, halves.epoch_step) == (6, 0)


def test_ctrl_c_during_a_chunk_counts_its_epochs(monkeypatch):
    """Ctrl-C lands after a compiled chunk returned, before the trainer looked: the
    chunk's steps count, and the next fit takes the batches an uninterrupted run
    would."""
    tr = _trainer()
    tr.fit(X, Y, epochs=1)
    calls, run = [], type(tr.plan).run

    def interrupted_run(self, *args, **kwargs):
        out = run(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return out
    monkeypatch.setattr(type(tr.plan), "run", interrupted_run)
    h = tr.fit(X, Y, epochs=5, record_every=1)
    monkeypatch.undo()
    assert h.interrupted and len(h) == 1 and len(h.step_loss) == 18
    assert tr.plan.t == 27 and (tr.epoch, tr.epoch_step) == (3, 0)
    tr.fit(X, Y, epochs=2)
    ref = _trainer()
    ref.fit(X, Y, epochs=5)
    np.testing.assert_array_equal(tr.model.flat_params, ref.model.flat_params)


def test_a_checkpoint_keeps_shuffle_false(tmp_path):
    whole = _trainer(shuffle=False)
    whole.fit(X, Y, epochs=4)
    first = _trainer(shuffle=False)
    first.fit(X, Y, epochs=2)
    first.save_checkpoint(tmp_path / "c.safetensors")
    resumed = Trainer.from_checkpoint(tmp_path / "c.safetensors", verbose=0)
    assert resumed.shuffle is False
    resumed.fit(X, Y, epochs=2)
    np.testing.assert_array_equal(resumed.model.flat_params, whole.model.flat_params)


def test_a_learning_rate_set_on_the_optimizer_is_used(backend):
    """The compiled plan reads the rate from the optimizer as the layer path does."""
    tr = _trainer(optimizer=optim.SGD(0.1))
    tr.fit(X, Y, epochs=1)
    before = tr.model.flat_params.copy()
    tr.optimizer.set_lr(1e-9)
    h = tr.fit(X, Y, epochs=1)
    assert h.lr == [1e-9]
    change = np.max(np.abs(tr.model.flat_params - before))
    assert 0 < change < 1e-6


def test_a_replaced_optimizer_or_regularizer_is_used():
    tr = _trainer(optimizer=optim.SGD(0.1))
    tr.fit(X, Y, epochs=1)
    plan = tr.plan
    tr.regularizer = R.L2(0.5)              # same optimizer: its state and t carry over
    h = tr.fit(X, Y, epochs=1)
    assert tr.plan is not plan and tr.plan.t == 18 and h.reg_loss[0] > 0
    ref = _trainer(optimizer=optim.SGD(0.1))
    ref.fit(X, Y, epochs=1)
    ref.regularizer = R.L2(0.5)
    ref.fit(X, Y, epochs=1)
    np.testing.assert_array_equal(tr.model.flat_params, ref.model.flat_params)
    tr.optimizer = optim.Adam(1e-3)          # a new optimizer starts afresh
    tr.fit(X, Y, epochs=1)
    assert tr.plan.optimizer is tr.optimizer and tr.plan.t == 9


def test_full_batch_on_other_rows_continues_the_optimizer():
    """A full-batch plan is built per data size; the next one continues Adam's state,
    the step count and the schedule."""
    tr = _trainer(optimizer=optim.Adam(1e-2, schedule=optim.StepDecay(0.5, 10)),
                  batch_size=None)
    tr.fit(X, Y, steps=30)
    m = tr.plan.state[0].copy()
    h = tr.fit(X, Y, steps=5, validation_split=0.2)
    assert tr.plan.t == 35 and h.lr == [1e-2 * 0.5 ** 3]
    assert not np.array_equal(tr.plan.state[0], m) and np.any(m)


def test_validation_split_holds_out_the_same_rows_at_every_fit():
    seen = []
    tr = _trainer()
    fixed = cb.LambdaCallback(on_fit_begin=lambda t: seen.append(t.plan._X.copy()))
    tr.fit(X, Y, epochs=1, validation_split=0.2, callbacks=[fixed])
    tr.fit(X, Y, epochs=1, validation_split=0.2, callbacks=[fixed])
    # the training rows (so the held-out ones) are the same both times
    np.testing.assert_array_equal(seen[0], seen[1])
    other = _trainer(seed=1)
    other.fit(X, Y, epochs=1, validation_split=0.2, callbacks=[fixed])
    assert not np.array_equal(seen[0], seen[2])


def test_a_per_epoch_callback_gets_every_epoch():
    sched = cb.LearningRateScheduler(lambda epoch, lr: lr * 0.99)
    tr = _trainer(optimizer=optim.SGD(0.1), batch_size=None)      # "auto": 1024 epochs/row
    h = tr.fit(X, Y, epochs=200, callbacks=[sched])
    assert len(h) == 200
    np.testing.assert_allclose(tr.optimizer.lr, 0.1 * 0.99 ** 200, rtol=1e-12)
    with pytest.raises(ValueError, match="LearningRateScheduler .*needs record_every=1"):
        tr.fit(X, Y, epochs=4, record_every=2, callbacks=[sched])
    # an epoch is scheduled when it ends, not when a fit stops inside it
    tr = _trainer(optimizer=optim.SGD(0.1))
    tr.fit(X, Y, steps=13, callbacks=[sched])
    assert tr.optimizer.lr == pytest.approx(0.1 * 0.99)
    tr.fit(X, Y, steps=5, callbacks=[sched])
    assert tr.optimizer.lr == pytest.approx(0.1 * 0.99 ** 2)


def test_early_stopping_on_a_custom_metric_needs_a_mode():
    def log_loss(scores, y, w):
        p = np.exp(scores - scores.max(1, keepdims=True))
        return float(-np.mean(np.log(p[np.arange(len(y)), y] / p.sum(1))))
    stop = cb.EarlyStopping("val_metric")
    with pytest.raises(ValueError, match="give mode='min' or mode='max'"):
        _trainer().fit(X, Y, epochs=2, validation_split=0.2, metric=log_loss,
                       callbacks=[stop])
    stop = cb.EarlyStopping("val_metric", mode="min", patience=1)
    h = _trainer().fit(X, Y, epochs=5, record_every=1, validation_split=0.2,
                       metric=log_loss, callbacks=[stop])
    assert np.all(np.diff(h.val_metric) < 0) and h.stopped_by is None


def test_callback_and_checkpoint_arguments_are_checked():
    with pytest.raises(TypeError, match="wrap a single one in a list"):
        _trainer().fit(X, Y, epochs=1, callbacks=cb.EarlyStopping())
    with pytest.raises(TypeError, match="callbacks must be a list of callbacks, got int"):
        _trainer().fit(X, Y, epochs=1, callbacks=3)
    assert len(_trainer().fit(X, Y, epochs=1, callbacks=None)) == 1
    with pytest.raises(ValueError, match="not a pattern with only {epoch}"):
        cb.Checkpoint("/tmp/{run}-{epoch}.safetensors")


def test_an_empty_history_exports():
    pytest.importorskip("pandas")
    tr = _trainer(optimizer=optim.SGD(1e300))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        h = tr.fit(X, Y, epochs=1, record_every=1)
    assert len(h) == 0 and h.to_dataframe().shape[0] == 0


def test_a_damaged_checkpoints_fields_are_refused_by_name(tmp_path):
    import json

    from fastnn import io as fio
    tr = _trainer()
    tr.fit(X, Y, epochs=1)
    path = tmp_path / "c.safetensors"
    tr.save_checkpoint(path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])

    def damaged(change):
        h = json.loads(json.dumps(header))
        ck = json.loads(h["__metadata__"]["checkpoint"])
        change(ck)
        h["__metadata__"]["checkpoint"] = json.dumps(ck)
        b = json.dumps(h).encode()
        b += b" " * (-len(b) % 8)
        out = tmp_path / "d.safetensors"
        out.write_bytes(len(b).to_bytes(8, "little") + b + raw[8 + n:])
        return out
    cases = [
        (lambda c: c["rng_state"].update(bit_generator="seed"), "one of numpy's bit gen"),
        (lambda c: c["rng_state"].pop("bit_generator"), "one of numpy's bit generators"),
        (lambda c: c["rng_state"].update(state=5), "a PCG64 state numpy refuses"),
        (lambda c: c.update(step=2**70), r"step must be at most 2\*\*63 - 1"),
        (lambda c: c["extra"].update(shuffle_seed="abc"), r"extra\['shuffle_seed'\]"),
        (lambda c: c["extra"].update(shuffle_seed=-5), r"extra\['shuffle_seed'\]"),
        (lambda c: c["extra"].update(batch_size=0), r"extra\['batch_size'\]"),
        (lambda c: c["extra"].update(classes=5), r"extra\['classes'\]"),
        (lambda c: c["extra"].update(classes=list(range(6))), "6 classes, its net has 3"),
        (lambda c: c["extra"].update(shuffle="no"), r"extra\['shuffle'\]"),
        (lambda c: c["extra"].update(epoch_step=9), r"epoch_step'\] 9 is not within"),
        (lambda c: c["extra"].update(epoch_step=9, epoch_of=[300, 32, True]),
         r"epoch_step'\] 9 is not within"),
        (lambda c: c["extra"].update(epoch_of=[32, 300, True]), r"extra\['epoch_of'\]"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            Trainer.from_checkpoint(damaged(change), verbose=0)
    # the file's name is checked before anything is called: np.random.seed() would
    # have reseeded the global generator
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    with pytest.raises(ValueError):
        fio.load_checkpoint(damaged(lambda c: c["rng_state"].update(bit_generator="seed")))
    assert np.array_equal(np.random.get_state()[1], state)


def test_an_epoch_ended_without_a_record_is_still_scheduled(monkeypatch):
    """Ctrl-C right after a chunk ends an epoch no record saw; the next fit's scheduler
    (a new object, as a user writes it inline) schedules it before its first step."""
    def schedule():
        return cb.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    tr = _trainer(optimizer=optim.SGD(0.1))
    tr.fit(X, Y, epochs=1, callbacks=[schedule()])
    run = type(tr.plan).run

    def interrupted_run(self, *args, **kwargs):
        run(self, *args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(type(tr.plan), "run", interrupted_run)
    assert tr.fit(X, Y, epochs=3, callbacks=[schedule()]).interrupted
    monkeypatch.undo()
    assert tr.epoch == 2 and tr.optimizer.lr == 0.05
    tr.fit(X, Y, epochs=2, callbacks=[schedule()])
    ref = _trainer(optimizer=optim.SGD(0.1))
    ref.fit(X, Y, epochs=4, callbacks=[schedule()])
    assert tr.optimizer.lr == ref.optimizer.lr == 0.1 / 16
    np.testing.assert_array_equal(tr.model.flat_params, ref.model.flat_params)


def test_an_unfinished_epoch_continues_only_on_the_same_rows_and_batches():
    tr = _trainer()
    tr.fit(X, Y, steps=5)
    X2, Y2 = np.vstack([X, X[:10]]), np.r_[Y, Y[:10]]      # 310 rows: also 9 batches
    tr.fit(X2, Y2, steps=4)
    assert (tr.epoch, tr.epoch_step) == (1, 4)           # epoch 0 ended; epoch 1 begun
    tr.shuffle = False                                   # another order: ends it too
    tr.fit(X2, Y2, steps=1)
    assert (tr.epoch, tr.epoch_step) == (2, 1)
    # an epoch ended so is scheduled like any other
    sched = cb.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    lr = tr.optimizer.lr
    tr.fit(X, Y, epochs=1, callbacks=[sched])
    assert (tr.epoch, tr.epoch_step) == (4, 0) and tr.optimizer.lr == lr / 4


def test_a_refused_fit_changes_no_counter():
    tr = _trainer()
    tr.fit(X, Y, steps=5)
    lr = tr.optimizer.lr
    sched = cb.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    refuse = cb.LambdaCallback(on_fit_begin=lambda t: 1 / 0)
    with pytest.raises(ZeroDivisionError):        # other rows: epoch 0 would have ended
        tr.fit(X[:250], Y[:250], epochs=1, callbacks=[sched, refuse])
    assert (tr.epoch, tr.epoch_step, tr.plan.t, tr.optimizer.lr) == (0, 5, 5, lr)
    tr.fit(X, Y, steps=4)
    ref = _trainer()
    ref.fit(X, Y, steps=9)
    np.testing.assert_array_equal(tr.model.flat_params, ref.model.flat_params)


def test_a_restored_trainer_given_a_new_optimizer_starts_it_afresh(tmp_path):
    import pickle
    tr = _trainer(optimizer=optim.Momentum(0.01))
    tr.fit(X, Y, epochs=1)
    tr.save_checkpoint(tmp_path / "c.safetensors")
    for restored in (pickle.loads(pickle.dumps(tr)),
                     Trainer.from_checkpoint(tmp_path / "c.safetensors", verbose=0)):
        restored.optimizer = optim.RMSProp(0.01)
        restored.fit(X, Y, epochs=1)
        assert restored.plan.t == 9          # not the momentum run's state and count
    kept = pickle.loads(pickle.dumps(tr))
    kept.fit(X, Y, epochs=1)
    assert kept.plan.t == 18                 # the same optimizer continues


def test_a_changed_layer_setting_or_reassigned_statistics_take_effect():
    from fastnn.layers import BatchNorm, Dropout, Linear, ReLU
    from fastnn.net import Sequential

    def trainer():
        net = Sequential([Linear(2, 16, seed=0), BatchNorm(16), ReLU(),
                          Dropout(0.5, seed=1), Linear(16, 3, seed=2)])
        return Trainer(net, optimizer=optim.Adam(1e-2), batch_size=30, seed=0, verbose=0)
    tr = trainer()
    tr.fit(X, Y, epochs=1)
    bn = tr.model.layers[1]
    bn.running_mean = np.zeros(16)                   # copied in: the plan keeps updating it
    bn.running_var = np.ones(16)
    tr.fit(X, Y, epochs=1)
    assert not np.all(bn.running_mean == 0)
    plan = tr.plan
    tr.model.layers[3].p = 1.0        # a new plan (which copies p when built), the same t
    tr.fit(X, Y, epochs=1)
    assert tr.plan is not plan and tr.plan.t == 30
    with pytest.raises(RuntimeError, match="a layer's settings included"):
        tr.model.layers[1].eps = 1e-3
        tr.plan.run(1, np.arange(30, dtype=np.int64))


def test_a_callback_acting_at_epoch_ends_gets_every_epoch_by_default():
    """EarlyStopping's patience counts records: by default it sees every epoch."""
    stop = cb.EarlyStopping("val_loss", patience=2)
    h = _trainer().fit(X, Y, epochs=30, validation_split=0.2, callbacks=[stop])
    assert h.epochs == list(range(len(h)))                 # a record per epoch
    # none acting at epoch ends: a row per 1024 steps (30 epochs of 9 steps: one row)
    for callbacks in ([cb.TerminateOnNonFinite()],
                      [cb.LambdaCallback(on_fit_end=lambda trainer, history: None)]):
        assert len(_trainer().fit(X, Y, epochs=30, callbacks=callbacks)) == 1

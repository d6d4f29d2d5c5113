"""In the solver's step, the Concats of a DenseNet block (each appending to the previous one's top)
fill one channels-last buffer per block: each copies only its new bottoms and yields the prefix up
to them, which the BatchNorm after it reads in place (caffe.net ``_concat_chain``,
caffe.functional ``concat_chain``; issue 19), and each training BatchNorm on such a prefix sums
only the channels added since the previous one (``ConcatChain.batch_stats``). The step must give
the plain Concats' loss, blob data, gradients and parameters bit for bit."""
from __future__ import annotations

import pytest
import torch

from caffe.functional import (NATIVE_BATCH_NORM_RELU_MIN, ConcatChain, _channel_rows,
                              concat_chain)
from caffe.native import ptr
from inference_helpers import MODELS, sse_train_net
from test_inference_equivalence import conv, dense_block, layer
from train_step_helpers import assert_same_step, sse_pair, train_net

# A dense block on 33x33 maps: each Concat appends a convolution's output to the previous Concat,
# whose top a BatchNorm + Scale + ReLU then reads (at least 6 x 48 x 33 x 33 values: the C
# kernels' route, NATIVE_BATCH_NORM_RELU_MIN); then a global pooling and a loss.
BATCH = 6
DENSE = (
    'name: "dense"\n'
    'layer { name: "data" type: "Input" top: "data" top: "label" input_param { '
    f'shape {{ dim: {BATCH} dim: 3 dim: 33 dim: 33 }} shape {{ dim: {BATCH} }} }} }}\n'
    + conv("stem", "data", "cat0", 48, 3, "pad: 1")
    + dense_block(4, 24)
    + layer("bn4", "BatchNorm", ["cat4"], ["bn4"])
    + layer("sc4", "Scale", ["bn4"], ["bn4"], "scale_param { bias_term: true }")
    + layer("relu4", "ReLU", ["bn4"], ["bn4"])
    + layer("pool", "Pooling", ["bn4"], ["pool"], "pooling_param { pool: AVE global_pooling: true }")
    + layer("ip", "InnerProduct", ["pool"], ["ip"], "inner_product_param { num_output: 5 }")
    + layer("loss", "SoftmaxWithLoss", ["ip", "label"], ["loss"])
)
CHAIN = ["concat1", "concat2", "concat3", "concat4"]


def chain_of(net) -> list[tuple[str, bool]]:
    return [(net._layer_names[i], first) for i, (_, first) in sorted(net._concat_chain.items())]


def test_a_dense_block_becomes_one_chain() -> None:
    assert BATCH * 48 * 33 * 33 >= NATIVE_BATCH_NORM_RELU_MIN
    net = train_net(DENSE)
    assert chain_of(net) == [(name, name == "concat1") for name in CHAIN]
    assert net._concat_chain[net._layer_index["concat1"]][0].total == 48 + 4 * 24


def test_sse_densenet_has_one_chain_per_dense_block() -> None:
    net = sse_train_net(MODELS["densenet"], 1, seed=0)
    chains = {id(chain): chain for chain, _ in net._concat_chain.values()}
    assert len(net._concat_chain) == 6 + 12 + 24 + 16
    assert sorted(chain.total for chain in chains.values()) == [256, 512, 1024, 1024]
    assert sum(first for _, first in net._concat_chain.values()) == 4


def test_step_equals_the_plain_concats(kernels, two_threads) -> None:
    assert_same_step(train_net(DENSE), train_net(DENSE, off="_concat_chain"))


def test_sse_densenet_step_equals_the_plain_concats() -> None:
    assert_same_step(*sse_pair("densenet", "_concat_chain"))


def test_a_concat_top_written_in_place_ends_the_chain_before_it() -> None:
    """A layer that writes over a Concat's top (an in-place ReLU) would write into the shared
    buffer under the later steps' prefixes: that Concat is left out, and the chain restarts
    after it."""
    text = DENSE.replace(
        layer("bn2", "BatchNorm", ["cat2"], ["bn2"]),
        layer("relu_cat2", "ReLU", ["cat2"], ["cat2"]) + layer("bn2", "BatchNorm", ["cat2"], ["bn2"]))
    net = train_net(text)
    assert chain_of(net) == [("concat3", True), ("concat4", False)]
    assert_same_step(net, train_net(text, off="_concat_chain"))


def test_turned_off_by_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("CAFFE_CONCAT_CHAIN", "0")
    assert train_net(DENSE)._concat_chain == {}


def test_a_step_whose_first_bottom_is_not_the_chain_top_concatenates_plainly() -> None:
    chain = ConcatChain(total=7)
    a, b, c = (torch.randn(2, k, 3, 3, requires_grad=True) for k in (2, 1, 3))
    ab = concat_chain(chain, True, [a, b])
    assert ab.data_ptr() == chain.buffer.data_ptr() and ab._base is None
    abc = concat_chain(chain, False, [ab, c])
    assert torch.equal(abc, torch.cat([a, b, c], 1)) and abc.data_ptr() == ab.data_ptr()
    other = concat_chain(chain, False, [ab.detach().clone(), c])  # not the chain's top
    assert torch.equal(other, torch.cat([a, b, c], 1)) and other.data_ptr() != ab.data_ptr()
    assert chain.buffer is None  # the chain ends for this forward
    too_wide = concat_chain(chain, True, [a, b, c, c])  # more channels than the last Concat's
    assert too_wide.shape[1] == 9 and chain.buffer is None
    grads = torch.autograd.grad((abc * torch.arange(6.0).view(1, 6, 1, 1)).sum(), [a, b, c])
    expected = torch.autograd.grad((torch.cat([a, b, c], 1)
                                    * torch.arange(6.0).view(1, 6, 1, 1)).sum(), [a, b, c])
    for g, e in zip(grads, expected):
        assert torch.equal(g, e)


def test_a_prefix_saved_for_backward_survives_the_later_steps_writes() -> None:
    """Each step's top is its own tensor over the buffer (its own version counter): a BatchNorm
    that saved an earlier prefix does not see the later copies into the channels after it."""
    chain = ConcatChain(total=6)
    a, b, c = (torch.randn(2, 2, 3, 3, requires_grad=True) for _ in range(3))
    ab = concat_chain(chain, True, [a, b])
    y = ab * ab  # saves ab
    abc = concat_chain(chain, False, [ab, c])
    (y.sum() + abc.sum()).backward()
    torch.testing.assert_close(a.grad, 2 * a.detach() + 1)
    torch.testing.assert_close(c.grad, torch.ones_like(c))


def _native_kernels():
    from caffe import native
    lib = native.library("batch_norm_channels_last")
    if lib is None:
        pytest.skip(f"caffe/csrc kernels not built: {native.problem('batch_norm_channels_last')}")
    return lib


class _CountingKernels:
    """caffe/csrc's kernels, counting the channels each bn_cl_stats call sums."""

    def __init__(self, lib) -> None:
        self.lib = lib
        self.stats_channels: list[int] = []

    def __getattr__(self, name: str):
        fn = getattr(self.lib, name)
        if name != "bn_cl_stats":
            return fn

        def stats(*args):
            self.stats_channels.append(int(args[2]))
            return fn(*args)
        return stats


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", [7, 130, 9000])
def test_chain_statistics_equal_one_pass_over_all_channels(threads: int, rows: int) -> None:
    """The statistics a chain keeps, summed a few new channels at a time, equal bit for bit those
    of one pass over all the prefix's channels (the C kernels split the rows between threads by
    the rows alone, however many channels a pass covers)."""
    lib = _native_kernels()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        chain = ConcatChain(total=40)
        parts = [torch.randn(rows, c, 1, 1) * 3 + 5 for c in (16, 8, 8, 8)]
        top = concat_chain(chain, True, parts[:1])
        for part in parts[1:]:
            top = concat_chain(chain, False, [top, part])
            rows_view = _channel_rows(top)
            stats = chain.batch_stats(rows_view, lib)[:, :top.shape[1]]
            one = torch.empty(2, top.shape[1])
            lib.bn_cl_stats(ptr(rows_view), rows_view.shape[0], rows_view.shape[1],
                            rows_view.stride(0), threads, ptr(one), ptr(one, 1))
            assert torch.equal(stats, one)
    finally:
        torch.set_num_threads(old)


def test_each_batch_norm_of_a_block_sums_only_the_channels_added_since_the_last(
        monkeypatch, two_threads) -> None:
    """In the step, the BatchNorms after the Concats of DENSE sum 72 channels (the chain's first
    top), then 24 each (the growth); bn0 reads the stem's top, outside the buffer (48)."""
    import caffe.functional
    counting = _CountingKernels(_native_kernels())
    monkeypatch.setattr(caffe.functional, "_native_batch_norm_kernels",
                        lambda x: counting if x.dtype == torch.float32 else None)
    net = train_net(DENSE)
    net.run()
    assert counting.stats_channels == [48, 72, 24, 24, 24]
    counting.stats_channels.clear()
    net.run()  # a new forward: the chain's statistics are summed again
    assert counting.stats_channels == [48, 72, 24, 24, 24]


def test_only_a_prefix_of_the_current_buffer_is_held() -> None:
    chain = ConcatChain(total=6)
    a, b = torch.randn(2, 2, 3, 3), torch.randn(2, 4, 3, 3)
    top = concat_chain(chain, True, [a, b])
    assert ConcatChain.holding(top) is chain
    assert ConcatChain.holding(chain.prefix(2)) is chain
    assert ConcatChain.holding(top.clone(memory_format=torch.channels_last)) is None
    assert ConcatChain.holding(a) is None
    concat_chain(chain, True, [a, b])  # the next forward's buffer
    assert ConcatChain.holding(top) is None


def test_the_tops_read_by_one_batch_norm_besides_the_chain_take_gradients_in_place() -> None:
    """cat1..cat3 are each read by the next Concat and one BatchNorm (their gradients may be
    added into the chain's gradient buffer); cat4, the last top, is read by the BatchNorm alone
    (the buffer starts from its gradient)."""
    net = train_net(DENSE)
    chain = net._concat_chain[net._layer_index["concat1"]][0]
    assert chain.accumulate_at == {72, 96, 120}


def test_a_top_with_another_reader_takes_its_gradient_as_autograd_sums_it(kernels) -> None:
    """A pooling that also reads cat2 gives cat2 a third gradient: its BatchNorm returns its
    input gradient, and autograd sums the three; the step stays the plain Concats' bit for
    bit."""
    text = DENSE.replace(
        layer("loss", "SoftmaxWithLoss", ["ip", "label"], ["loss"]),
        layer("side_pool", "Pooling", ["cat2"], ["side"],
              "pooling_param { pool: AVE global_pooling: true }")
        + layer("side_ip", "InnerProduct", ["side"], ["side_ip"],
                "inner_product_param { num_output: 5 }")
        + layer("side_loss", "SoftmaxWithLoss", ["side_ip", "label"], ["side_loss"])
        + layer("loss", "SoftmaxWithLoss", ["ip", "label"], ["loss"]))
    net = train_net(text)
    assert net._concat_chain[net._layer_index["concat1"]][0].accumulate_at == {72, 120}
    assert_same_step(net, train_net(text, off="_concat_chain"))


class _GradInputCalls:
    """caffe/csrc's kernels, recording (channels, accumulate) of each bn_cl_grad_input call."""

    def __init__(self, lib) -> None:
        self.lib = lib
        self.calls: list[tuple[int, int]] = []

    def __getattr__(self, name: str):
        fn = getattr(self.lib, name)
        if name != "bn_cl_grad_input":
            return fn

        def grad_input(*args):
            self.calls.append((int(args[3]), int(args[-1])))
            return fn(*args)
        return grad_input


def test_each_batch_norm_on_a_block_top_adds_its_gradient_into_the_buffer(monkeypatch,
                                                                          two_threads) -> None:
    import caffe.functional
    recording = _GradInputCalls(_native_kernels())
    monkeypatch.setattr(caffe.functional, "_native_batch_norm_kernels",
                        lambda x: recording if x.dtype == torch.float32 else None)
    net = train_net(DENSE)
    net.forward_backward()
    # backward order: bn4 (cat4, returned), bn3..bn1 (into the buffer), bn0 (the stem's top)
    assert recording.calls == [(144, 0), (120, 1), (96, 1), (72, 1), (48, 0)]


def test_a_step_gradient_from_outside_the_buffer_is_copied_into_it() -> None:
    """Where a top's gradient is not the buffer prefix its next step handed out (autograd summed
    it with another reader's), the step copies it into the buffer before splitting it; a last
    step's gradient that is a view of a larger tensor is copied too."""
    chain = ConcatChain(total=6)
    a, b, c = (torch.randn(2, 2, 3, 3, requires_grad=True) for _ in range(3))
    ab = concat_chain(chain, True, [a, b])
    abc = concat_chain(chain, False, [ab, c])
    wide = torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    other = torch.randn(2, 4, 3, 3)
    torch.autograd.backward([abc, ab], [wide[:, :6], other])
    torch.testing.assert_close(c.grad, wide[:, 4:6])
    torch.testing.assert_close(b.grad, wide[:, 2:4] + other[:, 2:4])
    torch.testing.assert_close(a.grad, wide[:, :2] + other[:, :2])
    assert chain.grad is None  # let go after the first step's backward

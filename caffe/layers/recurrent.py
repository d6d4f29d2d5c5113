"""Recurrent layers: RNN, LSTM (Caffe builds both as an unrolled net over the T time steps; here the
same layers run as a loop over time) and LSTMUnit, the one-step cell that Caffe's LSTM unrolls.

Blobs are T x N x ... (time steps, independent streams), ``cont`` is T x N: 0 where a stream starts
a new sequence (the previous hidden state, and for LSTM the cell, are cut there). Without
``expose_hidden`` the state at the end of one forward is the start of the next (a new net starts
from zeros), and no gradient crosses forwards. With ``expose_hidden`` the initial states are the
bottoms after x, cont (and the static input) and the final states are extra tops; as in Caffe
those bottoms and tops share data only, so the initial states get no gradient and the diffs of
the final-state tops are not used."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..functional import lstm_unit
from .base import Layer, Shape, register


class _Recurrent(Layer):
    """Common part of RNN and LSTM: bottoms, blobs, carried state."""

    min_bottoms, max_bottoms, min_tops, max_tops = 2, None, 1, None
    num_states: int = 1
    gates: int = 1

    def setup(self, bottom_shapes: list[Shape]) -> None:
        p = self.lp.recurrent_param
        x, cont = bottom_shapes[0], bottom_shapes[1]
        if len(x) < 2:
            raise self.error(f"bottom 0 must have at least 2 axes (time steps, streams), got {x}")
        if len(cont) != 2 or tuple(cont) != tuple(x[:2]):
            raise self.error(f"bottom 1 (cont) must be T x N = {tuple(x[:2])}, got {cont}")
        if p.num_output <= 0:
            raise self.error("recurrent_param.num_output must be positive")
        self.expose_hidden = bool(p.expose_hidden)
        exposed = self.num_states if self.expose_hidden else 0
        self.static_input = len(bottom_shapes) > 2 + exposed
        if len(bottom_shapes) != 2 + self.static_input + exposed:
            raise self.error(f"takes x, cont, optionally a static input, and {exposed} initial "
                             f"state bottom(s); got {len(bottom_shapes)} bottoms")
        if len(self.lp.top) != 1 + exposed:
            raise self.error(f"takes {1 + exposed} top(s) (the output"
                             + (" and the final states)" if exposed else ")")
                             + f", got {len(self.lp.top)}")
        if self.static_input and bottom_shapes[2][0] != x[1]:
            raise self.error(f"the static input's first axis must be N = {x[1]}, got "
                             f"{bottom_shapes[2]}")
        self.T, self.hidden = x[0], int(p.num_output)
        self._state: list[torch.Tensor] | None = None
        if not len(self.blobs):
            static_dim = math.prod(bottom_shapes[2][1:]) if self.static_input else 0
            self.make_blobs(math.prod(x[2:]), static_dim)

    def make_blobs(self, input_dim: int, static_dim: int) -> None:
        raise NotImplementedError

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        x = bottom_shapes[0]
        if x[0] != self.T:
            raise self.error(f"the number of time steps changed from {self.T} to {x[0]}")
        if tuple(bottom_shapes[1]) != tuple(x[:2]):
            raise self.error(f"bottom 1 (cont) must be T x N = {tuple(x[:2])}, got {bottom_shapes[1]}")
        state = (1, x[1], self.hidden)
        if self.expose_hidden:
            for s in bottom_shapes[2 + self.static_input:]:
                if tuple(s) != state:
                    raise self.error(f"initial state bottoms must be {state}, got {s}")
        return [(x[0], x[1], self.hidden)] + [state] * (len(self.lp.top) - 1)

    def allow_force_backward(self, bottom_index: int) -> bool:
        """The sequence indicators (bottom 1) take no gradient."""
        return bottom_index != 1

    def _initial_states(self, n: int, given: tuple[torch.Tensor, ...], like: torch.Tensor
                        ) -> list[torch.Tensor]:
        if self.expose_hidden:
            return [g.detach() for g in given]
        shape = (1, n, self.hidden)
        if self._state is None or tuple(self._state[0].shape) != shape:
            self._state = [like.new_zeros(shape) for _ in range(self.num_states)]
        return [s.to(like.device) for s in self._state]

    def forward(self, x: torch.Tensor, cont: torch.Tensor, *rest: torch.Tensor) -> list[torch.Tensor]:
        static = rest[0] if self.static_input else None
        given = rest[1:] if self.static_input else rest
        t_steps, n = x.shape[:2]
        blobs = list(self.blobs)
        w_x, b_x = blobs[0], blobs[1]
        x_term = F.linear(x.reshape(t_steps, n, -1), w_x, b_x)
        static_term = None
        if static is not None:
            static_term = F.linear(static.reshape(n, -1), blobs[2])[None]
        recurrent = blobs[3 if static is not None else 2:]
        states = self._initial_states(n, given, x)
        cont = cont.detach()
        outputs = []
        for t in range(t_steps):
            cont_t = cont[t:t + 1]
            h_conted = states[0] * cont_t[..., None]
            pre = F.linear(h_conted, recurrent[0]) + x_term[t:t + 1]
            if static_term is not None:
                pre = pre + static_term
            states, out = self.step(pre, states, cont_t, recurrent[1:])
            outputs.append(out)
        if not self.expose_hidden:
            self._state = [s.detach() for s in states]
        return [torch.cat(outputs, dim=0)] + [s.detach() for s in states][:len(self.lp.top) - 1]

    def step(self, pre: torch.Tensor, states: list[torch.Tensor], cont_t: torch.Tensor,
             blobs: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One time step from the summed pre-activation: the new states and the step's output."""
        raise NotImplementedError


@register("RNN")
class RNN(_Recurrent):
    """h_t = tanh(W_xh x_t + b_h + W_hh (cont_t h_{t-1}) [+ W_xh_static x_static]) and the output
    o_t = tanh(W_ho h_t + b_o). Blobs: W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o."""

    def make_blobs(self, input_dim: int, static_dim: int) -> None:
        p, h = self.lp.recurrent_param, self.hidden
        self.add_blob((h, input_dim), p.weight_filler)
        self.add_blob((h,), p.bias_filler)
        if static_dim:
            self.add_blob((h, static_dim), p.weight_filler)
        self.add_blob((h, h), p.weight_filler)
        self.add_blob((h, h), p.weight_filler)
        self.add_blob((h,), p.bias_filler)

    def step(self, pre: torch.Tensor, states: list[torch.Tensor], cont_t: torch.Tensor,
             blobs: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = torch.tanh(pre)
        return [h], torch.tanh(F.linear(h, blobs[0], blobs[1]))


@register("LSTM")
class LSTM(_Recurrent):
    """Gate inputs W_xc x_t + b_c + W_hc (cont_t h_{t-1}) [+ W_xc_static x_static] (order i, f, o, g
    along 4H) through an LSTMUnit; the output is h. Blobs: W_xc, b_c, [W_xc_static], W_hc."""

    num_states = 2

    def make_blobs(self, input_dim: int, static_dim: int) -> None:
        p, h = self.lp.recurrent_param, self.hidden
        self.add_blob((4 * h, input_dim), p.weight_filler)
        self.add_blob((4 * h,), p.bias_filler)
        if static_dim:
            self.add_blob((4 * h, static_dim), p.weight_filler)
        self.add_blob((4 * h, h), p.weight_filler)

    def step(self, pre: torch.Tensor, states: list[torch.Tensor], cont_t: torch.Tensor,
             blobs: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        c, h = lstm_unit(states[1], pre, cont_t)
        return [h, c], h


@register("LSTMUnit")
class LSTMUnit(Layer):
    """One LSTM step: bottoms c_prev (1 x N x H), gate inputs (1 x N x 4H, order i, f, o, g) and
    cont (1 x N); tops c and h. The forget gate is cont * sigmoid(x_f); cont gets no gradient."""

    min_bottoms, max_bottoms, min_tops, max_tops = 3, 3, 2, 2

    def reshape(self, bottom_shapes: list[Shape]) -> list[Shape]:
        c_prev, x, cont = bottom_shapes
        if len(c_prev) != 3 or c_prev[0] != 1:
            raise self.error(f"bottom 0 (c_prev) must be 1 x N x H, got {c_prev}")
        if tuple(x) != (1, c_prev[1], 4 * c_prev[2]):
            raise self.error(f"bottom 1 (gate inputs) must be {(1, c_prev[1], 4 * c_prev[2])}, got {x}")
        if tuple(cont) != (1, c_prev[1]):
            raise self.error(f"bottom 2 (cont) must be {(1, c_prev[1])}, got {cont}")
        return [tuple(c_prev), tuple(c_prev)]

    def allow_force_backward(self, bottom_index: int) -> bool:
        """The sequence indicators (bottom 2) take no gradient."""
        return bottom_index != 2

    def forward(self, c_prev: torch.Tensor, x: torch.Tensor, cont: torch.Tensor) -> list[torch.Tensor]:
        return list(lstm_unit(c_prev, x, cont))

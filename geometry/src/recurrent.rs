//! The layout of a recurrent layer (`rnn`, `lstm`, `gru`): how many parameters it has, where
//! each direction's weights sit, and how much its kernels keep on the tape. The macro sizes
//! the parameter store and the tape from these, and the runtime's kernels index by them, so
//! the two cannot disagree.
//!
//! ```
//! use striate::geometry::recurrent::{Cell, RecurrentGeom};
//! // PyTorch's nn.LSTM(28, 128): 4·128·(28 + 128 + 2) parameters.
//! let g = RecurrentGeom::new(Cell::Lstm, 28, 128, 28, 1, 1);
//! assert_eq!(g.param_len(), 4 * 128 * (28 + 128 + 2));
//! assert_eq!(g.output_len(), 28 * 128);
//! ```

/// Which cell a recurrent layer runs, with PyTorch's gates in PyTorch's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cell {
    /// `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
    RnnTanh,
    /// The same with ReLU.
    RnnRelu,
    /// Gates input, forget, cell, output (`i, f, g, o`).
    Lstm,
    /// Gates reset, update, new (`r, z, n`).
    Gru,
}

impl Cell {
    /// Rows of `W_ih` per hidden unit: 1, 4 or 3.
    pub const fn gates(self) -> usize {
        match self {
            Cell::RnnTanh | Cell::RnnRelu => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// One recurrent layer, possibly stacked (`layers`) and bidirectional (`directions = 2`).
///
/// Parameters are stored as PyTorch's `state_dict` lists them: for each layer, for each
/// direction, `weight_ih [G·H, I]`, `weight_hh [G·H, H]`, `bias_ih [G·H]`, `bias_hh [G·H]`.
/// Sequences are `(N, T, F)` per batch (PyTorch's `batch_first = True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecurrentGeom {
    /// The cell.
    pub cell: Cell,
    /// Features per step of the input, `I`.
    pub input: usize,
    /// Hidden units per direction, `H`.
    pub hidden: usize,
    /// Steps, `T`.
    pub steps: usize,
    /// Stacked layers, at least 1.
    pub layers: usize,
    /// 1, or 2 for a bidirectional layer.
    pub directions: usize,
    /// Dropout acts on the output of every stacked layer but the last (PyTorch's `dropout`
    /// argument): the tape then keeps each such layer's mask, [`mask_len`](Self::mask_len).
    pub dropout: bool,
}

impl RecurrentGeom {
    /// The geometry; `layers` and `directions` of 0 are taken as 1.
    pub const fn new(
        cell: Cell,
        input: usize,
        hidden: usize,
        steps: usize,
        layers: usize,
        directions: usize,
    ) -> RecurrentGeom {
        RecurrentGeom {
            cell,
            input,
            hidden,
            steps,
            layers: if layers == 0 { 1 } else { layers },
            directions: if directions == 2 { 2 } else { 1 },
            dropout: false,
        }
    }

    /// The same layer with dropout between its stacked layers (`on`), or without.
    ///
    /// ```
    /// use striate::geometry::recurrent::{Cell, RecurrentGeom};
    /// let g = RecurrentGeom::new(Cell::Gru, 4, 8, 10, 3, 1).with_dropout(true);
    /// // A mask for the output of layers 0 and 1, 10 steps of 8 features each.
    /// assert_eq!(g.mask_len(), 2 * 10 * 8);
    /// ```
    pub const fn with_dropout(self, on: bool) -> RecurrentGeom {
        RecurrentGeom {
            dropout: on,
            ..self
        }
    }

    /// Values per sample of the dropout masks: one per output value of every layer but the
    /// last, when there is dropout, and none otherwise.
    pub const fn mask_len(&self) -> usize {
        if self.dropout {
            (self.layers - 1) * self.output_len()
        } else {
            0
        }
    }

    /// Rows of each weight matrix, `G·H`.
    pub const fn gate_rows(&self) -> usize {
        self.cell.gates() * self.hidden
    }

    /// Input features of stacked layer `l`: `I` for the first, `D·H` after.
    pub const fn layer_input(&self, l: usize) -> usize {
        if l == 0 {
            self.input
        } else {
            self.directions * self.hidden
        }
    }

    /// Parameters of one direction of layer `l`.
    pub const fn block_len(&self, l: usize) -> usize {
        self.gate_rows() * (self.layer_input(l) + self.hidden + 2)
    }

    /// Offset of the parameters of direction `d` of layer `l`.
    pub const fn block_offset(&self, l: usize, d: usize) -> usize {
        let mut at = 0;
        let mut k = 0;
        while k < l {
            at += self.directions * self.block_len(k);
            k += 1;
        }
        at + d * self.block_len(l)
    }

    /// Every parameter.
    pub const fn param_len(&self) -> usize {
        self.block_offset(self.layers, 0)
    }

    /// Features per step of the output, `D·H`.
    pub const fn output_features(&self) -> usize {
        self.directions * self.hidden
    }

    /// Output values per sample, `T·D·H`.
    pub const fn output_len(&self) -> usize {
        self.steps * self.output_features()
    }

    /// Values per step that one direction keeps besides its hidden state: the activated gates
    /// and, for an LSTM, the cell state, for a GRU, `W_hn h + b_hn`.
    pub const fn kept_per_step(&self) -> usize {
        match self.cell {
            Cell::RnnTanh | Cell::RnnRelu => 0,
            Cell::Lstm | Cell::Gru => self.gate_rows() + self.hidden,
        }
    }

    /// Values per sample one direction of one layer keeps: its hidden states and
    /// [`kept_per_step`](Self::kept_per_step), for every step.
    pub const fn direction_tape(&self) -> usize {
        self.steps * (self.hidden + self.kept_per_step())
    }

    /// Values per sample the kernels keep on the tape for the backward pass: the input in
    /// time-major order, the outputs of every layer but the last (after dropout), every
    /// direction's [`direction_tape`](Self::direction_tape), and the dropout masks
    /// ([`mask_len`](Self::mask_len)).
    pub const fn aux_len(&self) -> usize {
        self.steps * self.input
            + (self.layers - 1) * self.output_len()
            + self.layers * self.directions * self.direction_tape()
            + self.mask_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's counts: `sum(p.numel() for p in nn.GRU(10, 20, num_layers=2,
    /// bidirectional=True).parameters())` is 3·20·(10+20+2)·2 + 3·20·(40+20+2)·2 = 11280.
    #[test]
    fn parameters_are_counted_as_pytorch_counts_them() {
        let g = RecurrentGeom::new(Cell::Gru, 10, 20, 5, 2, 2);
        assert_eq!(g.param_len(), 11280);
        assert_eq!(g.block_offset(1, 0), 2 * 3 * 20 * 32);
        assert_eq!(g.block_offset(1, 1), 2 * 3 * 20 * 32 + 3 * 20 * 62);
        let r = RecurrentGeom::new(Cell::RnnTanh, 3, 4, 2, 1, 1);
        assert_eq!(r.param_len(), 4 * (3 + 4 + 2));
        assert_eq!(r.aux_len(), 2 * 3 + 2 * 4);
    }
}

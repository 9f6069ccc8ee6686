//! From a sequence `[T, F]` to a vector `[F]` (each over a sample's valid steps when a pass
//! has lengths): `last` (PyTorch's `out[:, -1, :]`),
//! `final_state` (each direction's final hidden state, PyTorch's `h_n` of the last layer),
//! `mean_over_time` and `max_over_time`.

use quote::quote;

use super::{rt, usize_lit, Build, Emit, Kind, Layer, TapeNeeds};
use crate::plan::Shape;

pub const KINDS: &[&dyn Kind] = &[
    &TimeKind(Which::Last),
    &TimeKind(Which::FinalState),
    &TimeKind(Which::Mean),
    &TimeKind(Which::Max),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Last,
    FinalState,
    Mean,
    Max,
}

struct TimeKind(Which);

impl Kind for TimeKind {
    fn name(&self) -> &'static str {
        match self.0 {
            Which::Last => "last",
            Which::FinalState => "final_state",
            Which::Mean => "mean_over_time",
            Which::Max => "max_over_time",
        }
    }

    fn other_names(&self) -> &'static [&'static str] {
        match self.0 {
            Which::Last => &["last_step", "last_output"],
            Which::FinalState => &["h_n", "hidden_state"],
            Which::Mean => &["GlobalAveragePooling1D", "mean_pool", "average_over_time"],
            Which::Max => &["GlobalMaxPooling1D", "max_pool_over_time"],
        }
    }

    fn build(&self, cx: &mut Build<'_>) -> Option<Box<dyn Layer>> {
        let what = match self.0 {
            Which::Last => "picks the last step of",
            Which::FinalState => "picks the final hidden states of",
            Which::Mean => "averages over the steps of",
            Which::Max => "takes the maximum over the steps of",
        };
        let (steps, features, directions) = cx.sequence(what)?;
        Some(Box::new(OverTime {
            which: self.0,
            steps,
            features,
            directions,
        }))
    }
}

struct OverTime {
    which: Which,
    steps: usize,
    features: usize,
    directions: usize,
}

impl Layer for OverTime {
    fn output(&self) -> Shape {
        Shape::Vector(self.features)
    }

    fn flattens(&self) -> bool {
        true
    }

    fn explain(&self) -> String {
        if self.directions == 2 {
            format!(
                " (the features of both directions of a bidirectional layer, 2*{} = {})",
                self.features / 2,
                self.features
            )
        } else {
            String::new()
        }
    }

    fn tape(&self) -> TapeNeeds {
        TapeNeeds {
            idx_per_sample: if self.which == Which::Max {
                self.features
            } else {
                0
            },
            ..TapeNeeds::default()
        }
    }

    fn geometry(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        // `last` is PyTorch's `out[:, -1, :]`, both halves from the last step.
        let directions = if self.which == Which::FinalState {
            self.directions
        } else {
            1
        };
        let [t, f, d] = [self.steps, self.features, directions].map(usize_lit);
        quote! {
            const #g: #rt::ops::sequence::TimeGeom =
                #rt::ops::sequence::TimeGeom { steps: #t, features: #f, directions: #d };
        }
    }

    fn onnx(&self, e: &Emit<'_>) -> Option<proc_macro2::TokenStream> {
        let (rt, g) = (rt(), &e.g);
        let kinds = quote!(#rt::onnx::kinds);
        Some(match self.which {
            Which::Last | Which::FinalState => quote!(#kinds::Pick(Self::#g)),
            Which::Mean => quote!(#kinds::MeanOverTime),
            Which::Max => quote!(#kinds::MaxOverTime),
        })
    }

    fn forward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        let ops = quote!(#rt::ops::sequence);
        match self.which {
            Which::Last | Which::FinalState => {
                quote! { #ops::pick_forward(s.y, s.x, &Self::#g, n, s.lengths); }
            }
            Which::Mean => quote! { #ops::mean_forward(s.y, s.x, &Self::#g, n, s.lengths); },
            Which::Max => {
                quote! { #ops::max_forward(s.y, s.idx, s.x, &Self::#g, n, s.lengths); }
            }
        }
    }

    fn backward(&self, e: &Emit<'_>) -> proc_macro2::TokenStream {
        let (rt, g) = (rt(), &e.g);
        let ops = quote!(#rt::ops::sequence);
        match self.which {
            Which::Last | Which::FinalState => {
                quote! { #ops::pick_backward(s.d_x, s.d_y, &Self::#g, n, s.lengths); }
            }
            Which::Mean => quote! { #ops::mean_backward(s.d_x, s.d_y, &Self::#g, n, s.lengths); },
            Which::Max => quote! { #ops::max_backward(s.d_x, s.d_y, s.idx, &Self::#g, n); },
        }
    }
}

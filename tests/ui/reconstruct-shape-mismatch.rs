// An autoencoder is trained to give back its input, so its output must have the input's
// shape: a decoder that ends at 27x27 for a 28x28 input is refused where it is trained, with
// both shapes.
use striate::prelude::*;

network! {
    struct Short {
        input: [1, 28, 28],
        enc: conv2d(8, kernel = 3, stride = 2, pad = 1), relu,
        dec: conv_transpose2d(1, kernel = 3, stride = 2, pad = 1) -> [1, 27, 27],
    }
}

fn main() {
    let mut net = Short::init(0);
    let mut trainer = Trainer::new(&mut net, Adam::new(1e-3));
    let x = Array4::<f32>::zeros((1, 1, 28, 28));
    let _ = trainer.step_reconstruct(x.view(), x.view(), Loss::Mse);
}

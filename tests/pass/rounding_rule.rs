// The rounding rule: a fractional size is rounded down when what is left over is only
// padding and a stride gap. ResNet's 3x3 stride-2 pad-1 and 1x1 stride-2 on 32 both give 16.
use striate::prelude::*;

network! {
    #[allow(dead_code)]
    struct Down {
        input: [3, 32, 31],
        conv1: conv2d(8, kernel = 3, stride = 2, pad = 1) -> [8, 16, 16],
        shortcut: conv2d(8, kernel = 1, stride = 2) -> [8, 8, 8],
        avg_pool(3, stride = 2, pad = 1) -> [8, 4, 4],
    }
}

fn main() {
    assert!(Down::LAYERS[0].note.contains("rounded down"), "{}", Down::LAYERS[0].note);
    assert!(Down::LAYERS[1].note.contains("skipped by the stride"), "{}", Down::LAYERS[1].note);
    let text = Down::summary().to_string();
    assert!(text.contains("rounded down"), "{text}");
}
